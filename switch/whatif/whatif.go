// Package whatif replays journaled transactions against a draft config: which decisions the
// draft would change, by rule and by merchant, and the changed transactions themselves. It reads
// the journal in a read-only transaction and sends nothing anywhere; the CLI (`shoudan whatif`)
// and the console both run it.
package whatif

import (
	"context"
	"fmt"
	"sort"
	"time"

	posswitch "github.com/shoudan/shoudan/switch"
	"github.com/shoudan/shoudan/switch/journal"
	"github.com/shoudan/shoudan/terminals"
)

// Options select what is replayed.
type Options struct {
	From, To time.Time // local days, inclusive
	MID      string    // one merchant; "" = all
	// MaxChanges bounds the changed transactions the report lists (0 = all); the counts always
	// cover every transaction.
	MaxChanges int
}

// Outcome is a decision as the report shows it: the code and the rule that gave it.
type Outcome struct {
	Code string `json:"code"` // "" with rule "upstream": every acquirer check passes, the request goes to the issuer
	Rule string `json:"rule"`
}

func (o Outcome) String() string {
	if o.Rule == upstream {
		return "to the issuer"
	}
	return o.Code + " " + o.Rule
}

const upstream = "upstream"

// Change is one transaction the draft decides differently.
type Change struct {
	ID        int64     `json:"id"`
	RRN       string    `json:"rrn"`
	At        time.Time `json:"at"`
	MID       string    `json:"mid"`
	TID       string    `json:"tid"`
	Kind      string    `json:"kind"`
	EntryMode string    `json:"entry_mode"`
	Amount    int64     `json:"amount_fen"`
	Answered  string    `json:"answered"` // the response code the terminal got (from the issuer, when was is "upstream")
	Was       Outcome   `json:"was"`
	Would     Outcome   `json:"would"`
	Reason    string    `json:"reason"` // the draft's reason (or, when it passes, what the old decline was)
}

// Group is the changes that move from one outcome to the same other one.
type Group struct {
	Was       Outcome        `json:"was"`
	Would     Outcome        `json:"would"`
	Count     int            `json:"count"`
	Amount    int64          `json:"amount_fen"`
	Merchants []MerchantPart `json:"merchants"` // largest share first
}

// MerchantPart is one merchant's part of a group or of all changes.
type MerchantPart struct {
	MID    string `json:"mid"`
	Name   string `json:"name"`
	Count  int    `json:"count"`
	Amount int64  `json:"amount_fen"`
}

// Report is what a draft would have changed.
type Report struct {
	From          time.Time      `json:"from"`
	To            time.Time      `json:"to"`
	MID           string         `json:"mid,omitempty"`
	ConfigChanges []string       `json:"config_changes"` // the draft against the live config, in words
	Examined      int            `json:"examined"`
	Changed       int            `json:"changed"`
	ChangedAmount int64          `json:"changed_amount_fen"`
	Undetermined  map[string]int `json:"undetermined"` // by the step that would decide but was never evaluated
	Groups        []Group        `json:"groups"`       // largest first
	Merchants     []MerchantPart `json:"merchants"`    // largest first
	Changes       []Change       `json:"changes"`      // oldest first (by journal id), at most MaxChanges
	Truncated     bool           `json:"truncated"`
}

// Run replays the journaled transactions of o under draft. live is the registry now in force
// (for merchant names and the config changes in words; nil = none).
func Run(ctx context.Context, j *journal.Journal, live, draft *terminals.Registry, o Options) (*Report, error) {
	r := &Report{From: o.From, To: o.To, MID: o.MID, Undetermined: map[string]int{}}
	if live != nil {
		for _, d := range terminals.Diff(live, draft) {
			r.ConfigChanges = append(r.ConfigChanges, d.String())
		}
	}
	groups := map[[2]Outcome]*Group{}
	merchants := map[string]*MerchantPart{}
	groupMerchants := map[[2]Outcome]map[string]*MerchantPart{}
	err := j.EachDecided(ctx, journal.DecidedFilter{From: o.From, To: o.To, MID: o.MID}, func(t *journal.Txn, origDay time.Time) error {
		r.Examined++
		re := posswitch.Redecide(draft, t, origDay)
		if re.Undetermined != "" {
			// the draft lets it past the check that declined it, on to a step that was never
			// evaluated and reads state of that moment (keys, originals)
			r.Undetermined[re.Undetermined]++
			return nil
		}
		was, would := wasOutcome(t), wouldOutcome(re)
		if was == would {
			return nil
		}
		r.Changed++
		r.ChangedAmount += t.Amount
		key := [2]Outcome{was, would}
		g := groups[key]
		if g == nil {
			g = &Group{Was: was, Would: would}
			groups[key] = g
			groupMerchants[key] = map[string]*MerchantPart{}
		}
		g.Count++
		g.Amount += t.Amount
		add(groupMerchants[key], t)
		add(merchants, t)
		reason := re.Reason
		if would.Rule == upstream {
			reason = "passes every acquirer check (was: " + t.Reason + ")"
		}
		r.Changes = append(r.Changes, Change{ID: t.ID, RRN: t.RRN, At: t.CreatedAt, MID: t.MID, TID: t.TID, Kind: t.Kind,
			EntryMode: t.EntryMode, Amount: t.Amount, Answered: t.RespCode, Was: was, Would: would, Reason: reason})
		if o.MaxChanges > 0 && len(r.Changes) >= 2*o.MaxChanges { // keep the oldest MaxChanges, in bounded memory
			oldestFirst(r.Changes)
			r.Changes, r.Truncated = r.Changes[:o.MaxChanges], true
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	oldestFirst(r.Changes)
	if o.MaxChanges > 0 && len(r.Changes) > o.MaxChanges {
		r.Changes, r.Truncated = r.Changes[:o.MaxChanges], true
	}
	name := func(mid string) string {
		for _, reg := range []*terminals.Registry{draft, live} {
			if reg == nil {
				continue
			}
			if m := reg.Merchant(mid); m != nil {
				return m.Name
			}
		}
		return ""
	}
	for key, g := range groups {
		g.Merchants = sorted(groupMerchants[key], name)
		r.Groups = append(r.Groups, *g)
	}
	sort.Slice(r.Groups, func(a, b int) bool {
		if r.Groups[a].Count != r.Groups[b].Count {
			return r.Groups[a].Count > r.Groups[b].Count
		}
		return r.Groups[a].Would.String() < r.Groups[b].Would.String()
	})
	r.Merchants = sorted(merchants, name)
	return r, nil
}

func oldestFirst(cs []Change) { sort.Slice(cs, func(a, b int) bool { return cs[a].ID < cs[b].ID }) }

func add(m map[string]*MerchantPart, t *journal.Txn) {
	p := m[t.MID]
	if p == nil {
		p = &MerchantPart{MID: t.MID}
		m[t.MID] = p
	}
	p.Count++
	p.Amount += t.Amount
}

func sorted(m map[string]*MerchantPart, name func(string) string) []MerchantPart {
	out := make([]MerchantPart, 0, len(m))
	for _, p := range m {
		p.Name = name(p.MID)
		out = append(out, *p)
	}
	sort.Slice(out, func(a, b int) bool {
		if out[a].Count != out[b].Count {
			return out[a].Count > out[b].Count
		}
		return out[a].MID < out[b].MID
	})
	return out
}

// isAcquirerRule reports a rule of the acquirer checks (posswitch.Steps), which what-if re-runs
// or keeps; other rules (issuer, journal, reversal, recovery) decided after them.
func isAcquirerRule(rule string) bool {
	for _, st := range posswitch.Steps {
		if st.Rule == rule {
			return true
		}
	}
	return false
}

// wasOutcome is what was decided: an acquirer check's decline, or "to the issuer" for everything
// that passed them (whatever the issuer then said).
func wasOutcome(t *journal.Txn) Outcome {
	if isAcquirerRule(t.Rule) {
		return Outcome{Code: t.RespCode, Rule: t.Rule}
	}
	return Outcome{Rule: upstream}
}

func wouldOutcome(r posswitch.Redecision) Outcome {
	if r.Passes() {
		return Outcome{Rule: upstream}
	}
	return Outcome{Code: r.Code, Rule: r.Rule}
}

// UndeterminedTotal counts the transactions whose new decision is undetermined.
func (r *Report) UndeterminedTotal() int {
	n := 0
	for _, v := range r.Undetermined {
		n += v
	}
	return n
}

// Summary is the report's headline for one group, in words.
func (g Group) Summary() string {
	noun := "transactions"
	if g.Count == 1 {
		noun = "transaction"
	}
	s := fmt.Sprintf("%d %s (%s) %s → %s", g.Count, noun, terminals.FormatAmount(g.Amount), g.Was, g.Would)
	if doc := posswitch.RuleDoc[g.Would.Rule]; doc != "" && g.Would.Rule != upstream {
		s += " [" + doc + "]"
	}
	if len(g.Merchants) > 0 {
		top, n := 0, 0
		for i, m := range g.Merchants {
			if i == 3 {
				break
			}
			top += m.Count
			n++
		}
		word := "merchants account"
		if n == 1 {
			word = "merchant accounts"
		}
		s += fmt.Sprintf("; %d %s for %d%%", n, word, (top*100+g.Count/2)/g.Count)
	}
	return s
}
