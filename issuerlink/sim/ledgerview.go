package sim

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/shoudan/shoudan/spec"
	"github.com/shoudan/shoudan/spec/money"
)

// LedgerFilter selects what GET /ledger shows.
type LedgerFilter struct {
	Kind, State string
	Last4       string // the card's last 4 digits
	MID, TID    string
	Limit       int // newest first; 0 = 50
}

// LedgerView is the ledger as GET /ledger shows it: totals, balances and the newest
// authorisations matching the filter. Amounts are fen (int) and yuan (string).
type LedgerView struct {
	Kept            int         `json:"authorisations_kept"`
	Forgotten       int         `json:"authorisations_forgotten"`
	Retention       string      `json:"retention"`
	MaxAuths        int         `json:"max_auths"`
	Persisted       string      `json:"persisted_in,omitempty"`
	PersistError    string      `json:"persist_error,omitempty"`
	Held            int64       `json:"held"`
	HeldYuan        string      `json:"held_yuan"`
	ReversalsTwice  int         `json:"reversals_applied_twice"`
	ReversalsRepeat int         `json:"reversal_repeats"`
	Cards           []CardView  `json:"cards"`
	Matched         int         `json:"matched"`
	Auths           []AuthEntry `json:"auths"`
}

type CardView struct {
	PAN         string `json:"pan"`
	Status      string `json:"status"`
	Balance     int64  `json:"balance"`
	BalanceYuan string `json:"balance_yuan"`
}

type AuthEntry struct {
	At         string `json:"at"`
	Kind       string `json:"kind"`
	PAN        string `json:"pan"`
	Amount     int64  `json:"amount"`
	AmountYuan string `json:"amount_yuan"`
	State      string `json:"state"`
	AuthCode   string `json:"auth_code"`
	RRN        string `json:"rrn"`
	MID        string `json:"mid"`
	TID        string `json:"tid"`
	Reversals  int    `json:"reversals"`
	Key        string `json:"key"`
}

// View is the filtered ledger.
func (l *Ledger) View(f LedgerFilter) LedgerView {
	if f.Limit <= 0 {
		f.Limit = 50
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	v := LedgerView{Kept: len(l.order), Forgotten: l.evicted, Retention: orDefault(l.Retention, DefaultRetention).String(), MaxAuths: l.MaxAuths}
	if v.MaxAuths <= 0 {
		v.MaxAuths = DefaultMaxAuths
	}
	if l.file != nil {
		v.Persisted = l.file.dir
		if l.file.err != nil {
			v.PersistError = l.file.err.Error()
		}
	}
	for pan, c := range l.cards {
		v.Cards = append(v.Cards, CardView{spec.MaskPAN(pan), c.Status, c.Balance, money.Format(c.Balance)})
	}
	sort.Slice(v.Cards, func(i, j int) bool { return v.Cards[i].PAN < v.Cards[j].PAN })
	for i := len(l.order) - 1; i >= 0; i-- {
		a := l.auths[l.order[i]]
		if a.Kind == "purchase" && a.State == "approved" {
			v.Held += a.Amount
		}
		if a.Reversals > 1 {
			v.ReversalsTwice++
		}
		v.ReversalsRepeat += a.Repeats
		if (f.Kind != "" && a.Kind != f.Kind) || (f.State != "" && a.State != f.State) || (f.Last4 != "" && !strings.HasSuffix(a.PAN, f.Last4)) ||
			(f.MID != "" && a.MID != f.MID) || (f.TID != "" && a.TID != f.TID) {
			continue
		}
		v.Matched++
		if len(v.Auths) < f.Limit {
			at := a.At
			if at.IsZero() {
				at = a.Added
			}
			v.Auths = append(v.Auths, AuthEntry{at.Local().Format("2006-01-02 15:04:05"), a.Kind, spec.MaskPAN(a.PAN), a.Amount, money.Format(a.Amount),
				a.State, a.AuthCode, a.RRN, a.MID, a.TID, a.Reversals, a.Key})
		}
	}
	v.HeldYuan = money.Format(v.Held)
	return v
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// WriteText prints the view for a person.
func (v LedgerView) WriteText(w io.Writer) error {
	fmt.Fprintf(w, "simulated issuer ledger (amounts in yuan)\n")
	fmt.Fprintf(w, "held by approved purchases %s; reversals applied twice %d; repeated reversals answered %d\n", v.HeldYuan, v.ReversalsTwice, v.ReversalsRepeat)
	kept := fmt.Sprintf("%d authorisations kept (up to %d, for %s), %d forgotten", v.Kept, v.MaxAuths, v.Retention, v.Forgotten)
	if v.Persisted != "" {
		kept += "; books kept in " + v.Persisted
	} else {
		kept += "; books in memory only"
	}
	fmt.Fprintln(w, kept)
	if v.PersistError != "" {
		fmt.Fprintf(w, "WARNING: the books could not be written: %s\n", v.PersistError)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\ncard\tstatus\tbalance")
	for _, c := range v.Cards {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", c.PAN, c.Status, c.BalanceYuan)
	}
	fmt.Fprintf(tw, "\n%d of %d matching authorisations, newest first (filters: ?kind= ?state= ?pan=LAST4 ?mid= ?tid= ?limit= ?format=json)\n", len(v.Auths), v.Matched)
	fmt.Fprintln(tw, "at\tkind\tcard\tamount\tstate\tauth\trrn\tmid\ttid")
	for _, a := range v.Auths {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", a.At, a.Kind, a.PAN, a.AmountYuan, a.State, a.AuthCode, a.RRN, a.MID, a.TID)
	}
	return tw.Flush()
}

func (s *Server) ledgerHandler(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := LedgerFilter{Kind: q.Get("kind"), State: q.Get("state"), Last4: q.Get("pan"), MID: q.Get("mid"), TID: q.Get("tid")}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 100000 {
			http.Error(w, fmt.Sprintf("limit: expected 1..100000, found %q", l), http.StatusBadRequest)
			return
		}
		f.Limit = n
	}
	v := s.Issuer.Ledger.View(f)
	if q.Get("format") == "json" || strings.Contains(r.Header.Get("Accept"), "application/json") {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(v)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_ = v.WriteText(w)
}
