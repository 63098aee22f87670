package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	rc "github.com/shoudan/shoudan/responsecodes"
	"github.com/shoudan/shoudan/spec/keys"
	"github.com/shoudan/shoudan/spec/pos"
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
}

// savedState is the terminal's memory between runs of `shoudan pos`: batch, STAN, working keys
// and its last reversible request (without PIN block, track or ICC data, which are never kept).
type savedState struct {
	device.State
	Last     *pos.PurchaseRequest `json:"last,omitempty"`
	LastVoid *pos.VoidRequest     `json:"last_void,omitempty"`
	LastRRN  string               `json:"last_rrn,omitempty"`
	LastAuth string               `json:"last_auth,omitempty"`
}

func posCmd(cfgPath *string) *cobra.Command {
	var f posFlags
	c := &cobra.Command{
		Use:   "pos TYPE",
		Short: "A terminal simulator: send one transaction and print the response, decoded and masked",
		Long: `Send one transaction as a terminal would: signed on (automatically the first time), MACed,
with a format-0 PIN block under its PIN key. TYPE is one of:
  signon signoff echo balance purchase void refund reversal status settle
The terminal's batch, STAN and keys are kept in --state between runs, so that a void or a reversal
can follow the purchase it refers to. Terminal details (MID, serial, TMK) come from the config.
  shoudan pos purchase --amount 12.34
  shoudan pos purchase --entry tap --amount 88.00         (双免: contactless, no PIN)
  shoudan pos void                                        (the last purchase)
  shoudan pos reversal                                    (the last purchase or void)
  shoudan pos refund --rrn 000000000042 --orig-date 1120 --amount 5.00`,
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
	fl.StringVar(&f.amount, "amount", "1.00", "amount in yuan")
	fl.StringVar(&f.rrn, "rrn", "", "refund: the original's RRN")
	fl.StringVar(&f.origDate, "orig-date", "", "refund: the original's date MMDD; status: none")
	fl.StringVar(&f.origBatch, "orig-batch", "", "status: the original's batch")
	fl.StringVar(&f.origSTAN, "orig-stan", "", "status: the original's STAN")
	fl.StringVar(&f.reason, "reason", "98", "reversal reason (98 no answer, A0 MAC failed, 96 terminal fault, 06 other)")
	fl.StringVar(&f.nmi, "keys", "003", "sign-on key layout: 001, 003 or 004")
	fl.StringVar(&f.sdk, "sdk", "3.2.1", "application / SDK version sent in F59")
	fl.BoolVar(&f.asJSON, "json", false, "print the response as JSON")
	fl.BoolVar(&f.showFrame, "frame", false, "print the response frame in hex too")
	c.AddCommand(loadCmd(cfgPath))
	return c
}

func runPOS(w io.Writer, cfgPath, kind string, f posFlags) error {
	c, reg, err := loadConfig(cfgPath)
	if err != nil {
		return err
	}
	var cfg device.Config
	terms := reg.Terminals()
	if t := findTerminal(terms, f.tid); t == nil || len(t.TMK) == 0 {
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
			cfg = device.Config{TID: t.TID, MID: t.MID, Serial: t.Serial, TMK: t.TMK, NMI: f.nmi, SDK: f.sdk}
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
	if f.state == "" {
		f.state = filepath.Join(c.DataDir, "pos", f.tid+".json")
	}
	st := savedState{State: device.State{Batch: "000000"}}
	if b, err := os.ReadFile(f.state); err == nil {
		if err := json.Unmarshal(b, &st); err != nil {
			return fmt.Errorf("%s: %v", f.state, err)
		}
	}
	d, err := device.Dial(f.addr, cfg)
	if err != nil {
		return fmt.Errorf("switch at %s: %w", f.addr, err)
	}
	defer d.Close()
	d.State = st.State
	card, err := readCard(f)
	if err != nil {
		return err
	}
	amount, err := device.Amount(f.amount)
	if err != nil {
		return err
	}
	if kind != "signon" && len(d.Keys.TAK) == 0 {
		r, err := d.SignOn()
		if err != nil {
			return fmt.Errorf("sign-on: %w", err)
		}
		if r.Code() != rc.Approved {
			return printResult(w, r, f)
		}
		fmt.Fprintf(w, "signed on: batch %s\n", d.Batch)
	}
	var r *device.Result
	switch kind {
	case "signon":
		r, err = d.SignOn()
	case "signoff":
		r, err = d.SignOff()
	case "echo":
		r, err = d.Echo()
	case "balance":
		r, err = d.Balance(card)
	case "purchase":
		r, err = d.Purchase(card, amount)
		if err == nil {
			req := *r.Sent.(*pos.PurchaseRequest)
			req.PINBlock, req.Track2, req.Track3, req.ICC, req.SecCtl = nil, "", "", nil, ""
			req.PAN = cardPANOf(card)
			st.Last, st.LastVoid, st.LastRRN, st.LastAuth = &req, nil, r.Resp.RRN, r.Resp.AuthCode
		}
	case "void":
		if st.Last == nil {
			return errors.New("void: no purchase remembered in the state file: run `shoudan pos purchase` first")
		}
		r, err = d.Void(card, &device.Result{Sent: st.Last, Resp: device.Response{FinancialResponse: pos.FinancialResponse{Answer: pos.Answer{RRN: st.LastRRN}, AuthCode: st.LastAuth}}})
		if err == nil {
			v := *r.Sent.(*pos.VoidRequest)
			v.PINBlock, v.Track2, v.ICC, v.SecCtl = nil, "", nil, ""
			st.LastVoid = &v
		}
	case "reversal":
		var orig *device.Result
		switch {
		case st.LastVoid != nil:
			orig = &device.Result{Sent: st.LastVoid}
		case st.Last != nil:
			orig = &device.Result{Sent: st.Last, Resp: device.Response{FinancialResponse: pos.FinancialResponse{AuthCode: st.LastAuth}}}
		default:
			return errors.New("reversal: no purchase or void remembered in the state file")
		}
		r, err = d.Reversal(orig, f.reason)
	case "refund":
		if f.rrn == "" || f.origDate == "" {
			return errors.New("refund: --rrn and --orig-date (MMDD) are required")
		}
		r, err = d.Refund(card, f.rrn, f.origDate, amount)
	case "status":
		r, err = d.Status(f.origBatch, f.origSTAN)
	case "settle":
		r, err = d.Settle(pos.Totals{})
	default:
		return fmt.Errorf("unknown transaction type %q", kind)
	}
	if r != nil && r.Frame != nil && r.Frame.Head().Processing() == pos.ProcSignOn {
		d.Keys = keys.WorkingKeys{} // told to sign on again: the next run does
	}
	st.State = d.State
	if werr := saveState(f.state, st); werr != nil {
		fmt.Fprintf(os.Stderr, "warning: state not saved: %v\n", werr)
	}
	if err != nil && r == nil {
		return err
	}
	if perr := printResult(w, r, f); perr != nil {
		return perr
	}
	return err
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

func saveState(path string, st savedState) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(st, "", "  ")
	return os.WriteFile(path, b, 0o600)
}

func printResult(w io.Writer, r *device.Result, f posFlags) error {
	d := rc.Describe(r.Code())
	if f.asJSON {
		return json.NewEncoder(w).Encode(map[string]any{"code": r.Code(), "meaning": d.English, "latency_ms": r.Latency.Seconds() * 1000,
			"mac_valid": r.MACValid, "response": pos.ToJSON(pos.Describe(r.Frame))})
	}
	fmt.Fprintf(w, "%s %s  %s / %s  (%s, %.1f ms)\n", r.Frame.Head().MTI, r.Code(), d.Chinese, d.English, d.Action, r.Latency.Seconds()*1000)
	if f.showFrame {
		fmt.Fprintf(w, "response %x\n", pos.WithLen(r.Raw)) // the request is not shown: it carries a PIN block
	}
	return pos.WriteTable(w, pos.Describe(r.Frame))
}

func findTerminal(ts []*terminals.Terminal, tid string) *terminals.Terminal {
	for _, t := range ts {
		if t.TID == tid {
			return t
		}
	}
	return nil
}
