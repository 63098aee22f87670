package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	rc "github.com/shoudan/shoudan/responsecodes"
	"github.com/shoudan/shoudan/spec/keys"
	"github.com/shoudan/shoudan/spec/money"
	"github.com/shoudan/shoudan/spec/pos"
	"github.com/shoudan/shoudan/switch/journal"
	"github.com/shoudan/shoudan/switch/netserve"
	"github.com/shoudan/shoudan/switch/query"
	"github.com/shoudan/shoudan/terminals"
	"github.com/shoudan/shoudan/terminals/device"
	"github.com/shoudan/shoudan/terminals/registrydb"
	"github.com/spf13/cobra"
)

// posFlags are what a terminal operator types: the terminal, the card and the transaction.
type posFlags struct {
	addr, tid, state                 string
	pan, pin, expiry, entry          string
	amount, rrn, origDate, origBatch string
	origSTAN, reason, nmi            string
	sdk                              string
	asJSON, showFrame                bool
	daysAgo                          int
}

// posKinds are the transaction types `pos` sends.
var posKinds = []string{"signon", "signoff", "echo", "balance", "purchase", "void", "refund", "reversal", "status", "settle"}

func posCmd(cfgPath *string) *cobra.Command {
	var f posFlags
	c := &cobra.Command{
		Use:   "pos TYPE",
		Short: "A terminal simulator: send one transaction and print the response, decoded and masked",
		Long: `Send one transaction as a terminal would: signed on (automatically the first time), MACed,
with a format-0 PIN block under its PIN key. TYPE is one of:
  signon signoff echo balance purchase void refund reversal status settle
The terminal's batch, STAN, keys (under its TMK) and the batch's transactions are kept in --state
between runs, so that a void or a reversal can follow the purchase it refers to and settle sends
the terminal's own totals (a new batch opens after settlement). Terminal details (MID, serial,
TMK) come from the config. Amounts are yuan with at most 2 decimals. Exit status: 0 approved,
2 declined (the code, its meaning and the switch's own reason are printed), 1 could not run.
  shoudan pos purchase --amount 12.34
  shoudan pos purchase --entry tap --pin "" --amount 88.00    (双免: contactless, no PIN)
  shoudan pos void                                            (the last purchase)
  shoudan pos reversal                                        (the last purchase or void)
  shoudan pos settle                                          (the batch's totals; then a new batch)
Refunds need an original from an earlier day. On the test environment (terminal 20000001) the
switch's business clock can be moved back for one transaction:
  shoudan pos purchase --tid 20000001 --days-ago 3 --amount 30.00
  shoudan pos refund --tid 20000001 --amount 10.00            (the last purchase's RRN and date)
  shoudan pos refund --rrn 000000001042 --orig-date 1120 --amount 5.00`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPOS(cmd.OutOrStdout(), *cfgPath, args[0], f)
		},
	}
	fl := c.Flags()
	fl.StringVar(&f.addr, "addr", "", "switch listener (default: the config's listener for the terminal's environment)")
	fl.StringVar(&f.tid, "tid", "10000001", "terminal ID (its MID, serial and TMK come from the config)")
	fl.StringVar(&f.state, "state", "", "state file (default <data_dir>/pos/<tid>.json)")
	fl.StringVar(&f.pan, "pan", "6222021234567890123", "card number")
	fl.StringVar(&f.pin, "pin", "123456", "PIN (\"\" for none)")
	fl.StringVar(&f.expiry, "expiry", "2912", "card expiry YYMM")
	fl.StringVar(&f.entry, "entry", "chip", "how the card is read: chip, swipe or tap (tap without --pin is 双免)")
	fl.StringVar(&f.amount, "amount", "1.00", "amount in yuan, at most 2 decimals (12.34)")
	fl.StringVar(&f.rrn, "rrn", "", "refund: the original's RRN (default: the last purchase's)")
	fl.StringVar(&f.origDate, "orig-date", "", "refund: the original's date MMDD (default: the last purchase's)")
	fl.IntVar(&f.daysAgo, "days-ago", 0, "test environment only: the switch's business day for this transaction is this many days back (to make a refund's original)")
	fl.StringVar(&f.origBatch, "orig-batch", "", "status: the original's batch")
	fl.StringVar(&f.origSTAN, "orig-stan", "", "status: the original's STAN")
	fl.StringVar(&f.reason, "reason", "98", "reversal reason (98 no answer, A0 MAC failed, 96 terminal fault, 06 other)")
	fl.StringVar(&f.nmi, "keys", "003", "sign-on key layout: 001, 003 or 004")
	fl.StringVar(&f.sdk, "sdk", "3.2.1", "application / SDK version sent in F59")
	fl.BoolVar(&f.asJSON, "json", false, "print the response as JSON")
	fl.BoolVar(&f.showFrame, "frame", false, "print the response frame in hex too")
	pf := c.PersistentFlags()
	pf.StringVar(&terminalTLS.CA, "tls-ca", "", "speak TLS: the CA bundle the switch's certificate must chain to")
	pf.StringVar(&terminalTLS.Cert, "tls-cert", "", "mutual TLS: the terminal's certificate (PEM)")
	pf.StringVar(&terminalTLS.Key, "tls-key", "", "mutual TLS: the terminal's key (PEM)")
	c.AddCommand(loadCmd(cfgPath))
	return c
}

// errDeclined makes `pos` exit 2: the transaction ran and was declined.
type errDeclined struct{ code string }

func (e errDeclined) Error() string { return "declined with code " + e.code }

// terminalTLS are the simulated terminals' TLS files (pos and pos load).
var terminalTLS tlsFlags

type tlsFlags struct{ CA, Cert, Key string }

// config is the terminals' TLS config, nil for plain TCP.
func (f tlsFlags) config() (*tls.Config, error) {
	if f.CA == "" && f.Cert == "" {
		return nil, nil
	}
	r, err := netserve.NewClientTLS(netserve.TLSFiles{Cert: f.Cert, Key: f.Key, ServerCA: f.CA}, nil)
	if err != nil {
		return nil, fmt.Errorf("--tls-*: %w", err)
	}
	defer r.Close()
	return r.Client(), nil
}

func runPOS(w io.Writer, cfgPath, kind string, f posFlags) error {
	known := false
	for _, k := range posKinds {
		known = known || k == kind
	}
	if !known {
		return fmt.Errorf("unknown transaction type %q: expected one of %s", kind, strings.Join(posKinds, ", "))
	}
	var amount int64
	if kind == "purchase" || kind == "refund" {
		var err error
		if amount, err = money.Positive(f.amount); err != nil {
			return fmt.Errorf("--amount: %w", err)
		}
	}
	c, reg, err := loadConfig(cfgPath)
	if err != nil {
		return err
	}
	var cfg device.Config
	var env terminals.Environment
	terms := reg.Terminals()
	if t := findTerminal(terms, f.tid); t == nil || t.TMKText() == "" {
		// not in the file as a terminal with its key (registered through the console, or an
		// exported file with sealed keys): the registry database has it
		err := withRegistry(context.Background(), cfgPath, func(s *registrydb.Store) error {
			dbReg, err := s.Load(context.Background())
			if err == nil {
				terms = dbReg.Terminals()
			}
			return err
		})
		if err != nil {
			return err
		}
	}
	for _, t := range terms {
		if t.TID == f.tid {
			cfg = device.Config{TID: t.TID, MID: t.MID, Serial: t.Serial, TMK: device.TMKOf(t.DemoTMK), NMI: f.nmi, SDK: f.sdk}
			env = t.Env
			if cfg.TLS, err = terminalTLS.config(); err != nil {
				return err
			}
			if f.addr == "" {
				for _, l := range c.Listeners {
					if l.Env == string(t.Env) {
						f.addr = l.Addr
					}
				}
			}
		}
	}
	if cfg.TID == "" {
		return fmt.Errorf("--tid %s: not a terminal of the registry", f.tid)
	}
	resetClock := func() {}
	if f.daysAgo != 0 {
		if env != terminals.Test {
			return fmt.Errorf("--days-ago: refused for terminal %s: the business clock moves only on the test environment (try --tid 20000001)", f.tid)
		}
		if f.daysAgo < 0 || f.daysAgo > 400 {
			return fmt.Errorf("--days-ago: expected 1..400, found %d", f.daysAgo)
		}
		reset, err := setTestClock(c.Admin.Addr, time.Duration(-f.daysAgo)*24*time.Hour)
		if err != nil {
			return err
		}
		var once sync.Once
		resetClock = func() { once.Do(reset) }
		defer resetClock()
	}
	if f.state == "" {
		f.state = filepath.Join(c.DataDir, "pos", f.tid+".json")
	}
	st, ds, err := loadState(f.state, cfg.TMK)
	if err != nil {
		return err
	}
	if ds.Keys.TAK != nil && st.KeyLayout != "" {
		cfg.NMI = st.KeyLayout
	}
	card, err := readCard(f)
	if err != nil {
		return err
	}
	if kind == "refund" && (f.rrn == "" || f.origDate == "") {
		if st.LastRRN == "" || st.LastDate == "" {
			return errors.New("refund: give --rrn and --orig-date (MMDD) of the original purchase, or make one first (see --days-ago)")
		}
		if f.rrn == "" {
			f.rrn = st.LastRRN
		}
		if f.origDate == "" {
			f.origDate = st.LastDate
		}
	}
	d, err := device.Dial(f.addr, cfg)
	if err != nil {
		return fmt.Errorf("switch at %s: %w: is `shoudan serve` running with this config?", f.addr, err)
	}
	defer d.Close()
	d.State = ds
	save := func() {
		if werr := saveState(f.state, st, d.State, d.NMI, cfg.TMK); werr != nil {
			fmt.Fprintf(os.Stderr, "warning: state not saved: %v\n", werr)
		}
	}
	if kind != "signon" && len(d.Keys.TAK) == 0 {
		r, err := d.SignOn()
		if err != nil {
			return fmt.Errorf("sign-on: %w", err)
		}
		if r.Code() != rc.Approved {
			return printResult(w, r, f, cfgPath)
		}
		st.Items = nil // every sign-on opens a new batch
		save()
		fmt.Fprintf(w, "signed on: batch %s\n", d.Batch)
	}
	var r *device.Result
	defer resetClock()
	switch kind {
	case "signon":
		r, err = d.SignOn()
		if err == nil && r.Code() == rc.Approved {
			st.Items = nil
		}
	case "signoff":
		r, err = d.SignOff()
	case "echo":
		r, err = d.Echo()
	case "balance":
		r, err = d.Balance(card)
	case "purchase":
		r, err = d.Purchase(card, amount)
		if err == nil && r.Code() == rc.Approved { // what a void, reversal or refund can follow
			req := *r.Sent.(*pos.PurchaseRequest)
			req.PINBlock, req.Track2, req.Track3, req.ICC, req.SecCtl = nil, "", "", nil, ""
			req.PAN, req.Expiry = cardPANOf(card), card.Expiry
			st.Last, st.LastVoid, st.LastRRN, st.LastAuth, st.LastDate = &req, nil, r.Resp.RRN, r.Resp.AuthCode, r.Resp.LocalDate
			st.Items = append(st.Items, batchItem{Kind: "purchase", STAN: req.STAN, Amount: amount, Standing: true})
		}
	case "void":
		if st.Last == nil {
			return errors.New("void: no purchase remembered in the state file: run `shoudan pos purchase` first")
		}
		r, err = d.Void(card, &device.Result{Sent: st.Last, Resp: device.Response{FinancialResponse: pos.FinancialResponse{Answer: pos.Answer{RRN: st.LastRRN}, AuthCode: st.LastAuth}}})
		if err == nil {
			v := *r.Sent.(*pos.VoidRequest)
			v.PINBlock, v.Track2, v.ICC, v.SecCtl = nil, "", nil, ""
			v.PAN, v.Expiry = cardPANOf(card), card.Expiry
			st.LastVoid = &v
			if r.Code() == rc.Approved {
				if p := st.item("purchase", st.Last.STAN); p != nil {
					p.Standing = false
				}
				st.Items = append(st.Items, batchItem{Kind: "void", STAN: v.STAN, Amount: v.Amount, Of: st.Last.STAN, Standing: true})
			}
		}
	case "reversal":
		var orig *device.Result
		var rk, rs string
		switch {
		case st.LastVoid != nil:
			orig, rk, rs = &device.Result{Sent: st.LastVoid}, "void", st.LastVoid.STAN
		case st.Last != nil:
			orig, rk, rs = &device.Result{Sent: st.Last, Resp: device.Response{FinancialResponse: pos.FinancialResponse{AuthCode: st.LastAuth}}}, "purchase", st.Last.STAN
		default:
			return errors.New("reversal: no purchase or void remembered in the state file")
		}
		r, err = d.Reversal(orig, f.reason)
		if err == nil && r.Code() == rc.Approved {
			st.reversed(rk, rs)
			if rk == "void" {
				st.LastVoid = nil
			} else {
				st.Last = nil
			}
		}
	case "refund":
		r, err = d.Refund(card, f.rrn, f.origDate, amount)
		if err == nil && r.Code() == rc.Approved {
			st.Items = append(st.Items, batchItem{Kind: "refund", STAN: r.Sent.(*pos.RefundRequest).STAN, Amount: amount, Standing: true})
		}
	case "status":
		r, err = d.Status(f.origBatch, f.origSTAN)
	case "settle":
		tot := st.totals()
		fmt.Fprintf(w, "batch %s totals: debits %d for %s yuan, credits %d for %s yuan\n", d.Batch, tot.DebitCount, money.Format(tot.DebitAmount),
			tot.CreditCount, money.Format(tot.CreditAmount))
		r, err = d.Settle(tot)
	}
	resetClock() // at once, before anything is printed (a closed pipe must not leave the clock moved)
	if r != nil && r.Frame != nil && r.Frame.Head().Processing() == pos.ProcSignOn {
		d.Keys = keys.WorkingKeys{} // told to sign on again: the next run does
	}
	save()
	if err != nil && r == nil {
		return err
	}
	if perr := printResult(w, r, f, cfgPath); perr != nil {
		return perr
	}
	if err != nil {
		return err
	}
	if kind == "settle" && r.Code() == rc.Approved {
		old := d.Batch
		if s48, perr := pos.ParseSettlement48(r.Resp.Totals); perr == nil {
			if s48.Domestic.Reconcile == '1' {
				fmt.Fprintf(w, "batch %s settled: balanced\n", old)
			} else {
				fmt.Fprintf(w, "batch %s settled: NOT balanced: the switch counted debits %d for %s yuan, credits %d for %s yuan\n", old,
					s48.Domestic.DebitCount, money.Format(s48.Domestic.DebitAmount), s48.Domestic.CreditCount, money.Format(s48.Domestic.CreditAmount))
			}
		}
		so, serr := d.SignOn() // the batch is closed: the next one opens with a sign-on
		if serr == nil && so.Code() == rc.Approved {
			st.Items, st.Last, st.LastVoid = nil, nil, nil
			save()
			fmt.Fprintf(w, "signed on again: batch %s open\n", d.Batch)
		} else {
			fmt.Fprintf(w, "warning: could not open the next batch (sign-on: %v); the next run signs on\n", serr)
		}
	}
	if code := r.Code(); code != rc.Approved {
		return errDeclined{code}
	}
	return nil
}

// setTestClock moves the switch's business clock for the test environment through its admin
// port and returns what puts it back.
func setTestClock(admin string, offset time.Duration) (func(), error) {
	if admin == "" {
		return nil, errors.New("--days-ago: the config has no admin.addr to reach the switch's test clock")
	}
	set := func(d time.Duration) error {
		resp, err := http.Post("http://"+admin+"/test-clock?offset="+d.String(), "text/plain", nil)
		if err != nil {
			return fmt.Errorf("--days-ago: the switch's admin port %s: %w", admin, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("--days-ago: the switch refused: %s", strings.TrimSpace(string(b)))
		}
		return nil
	}
	if err := set(offset); err != nil {
		return nil, err
	}
	return func() {
		if err := set(0); err != nil {
			fmt.Fprintf(os.Stderr, "warning: the test clock was not reset: %v\n", err)
		}
	}, nil
}

func readCard(f posFlags) (device.Card, error) {
	switch f.entry {
	case "chip":
		return device.Chip(f.pan, f.expiry, f.pin), nil
	case "swipe":
		return device.Swipe(f.pan, f.expiry, f.pin), nil
	case "tap":
		return device.Tap(f.pan, f.expiry, f.pin), nil
	}
	return device.Card{}, fmt.Errorf("--entry: expected chip, swipe or tap, found %q", f.entry)
}

func cardPANOf(c device.Card) string {
	if c.PAN != "" {
		return c.PAN
	}
	pan, _, _ := strings.Cut(c.Track2, "=")
	return pan
}

func printResult(w io.Writer, r *device.Result, f posFlags, cfgPath string) error {
	d := rc.Describe(r.Code())
	rule, reason, rrn := switchReason(cfgPath, r)
	if f.asJSON {
		return json.NewEncoder(w).Encode(map[string]any{"code": r.Code(), "meaning": d.English, "meaning_zh": d.Chinese, "latency_ms": r.Latency.Seconds() * 1000,
			"mac_valid": r.MACValid, "rule": rule, "reason": reason, "rrn": rrn, "response": pos.ToJSON(pos.Describe(r.Frame))})
	}
	fmt.Fprintf(w, "%s %s  %s / %s  (%s, %.1f ms)\n", r.Frame.Head().MTI, r.Code(), d.Chinese, d.English, d.Action, r.Latency.Seconds()*1000)
	if reason != "" {
		fmt.Fprintf(w, "switch: %s (rule %s)", reason, rule)
		if rrn != "" {
			fmt.Fprintf(w, ", RRN %s: `shoudan explain %s` for every check", rrn, rrn)
		}
		fmt.Fprintln(w)
	}
	if r.Resp.Amount > 0 {
		fmt.Fprintf(w, "amount %s yuan\n", money.Format(r.Resp.Amount))
	}
	if f.showFrame {
		fmt.Fprintf(w, "response %x\n", pos.WithLen(r.Raw)) // the request is not shown: it carries a PIN block
	}
	return pos.WriteTable(w, pos.Describe(r.Frame))
}

// switchReason finds the switch's own rule and reason for the response in the journal (by
// terminal and STAN), when the journal is reachable from here.
func switchReason(cfgPath string, r *device.Result) (rule, reason, rrn string) {
	if r.Kind == nil || !r.Kind.Financial || r.Kind == pos.StatusQuery {
		return "", "", ""
	}
	rrn = r.Resp.RRN
	_ = withJournal(context.Background(), cfgPath, func(j *journal.Journal) error {
		p, err := query.List(context.Background(), j, query.Filter{TID: r.Resp.TID, MID: r.Resp.MID, STAN: r.Resp.STAN, Kind: r.Kind.Name, Limit: 1})
		if err == nil && len(p.Rows) > 0 && p.Rows[0].RespCode == r.Code() {
			rule, reason = p.Rows[0].Rule, p.Rows[0].Reason
			if rrn == "" {
				rrn = p.Rows[0].RRN
			}
		}
		return err
	})
	return rule, reason, rrn
}

func findTerminal(ts []*terminals.Terminal, tid string) *terminals.Terminal {
	for _, t := range ts {
		if t.TID == tid {
			return t
		}
	}
	return nil
}
