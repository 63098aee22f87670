package terminals

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Difference is one entry that differs between two registries: what an edit or an import
// changes, in words for the audit log (keys are never shown, only that they changed).
type Difference struct {
	Kind   string // rules, merchant, qps_whitelist, terminal, load_terminals
	MID    string
	TID    string
	Action string // added, changed, removed
	Fields []FieldChange
}

// FieldChange is one changed field, with its old and new value as an operator writes them.
type FieldChange struct{ Field, Old, New string }

func (d Difference) String() string {
	var who string
	switch d.Kind {
	case "merchant":
		who = "merchant " + d.MID
	case "terminal":
		who = "terminal " + d.TID + " of merchant " + d.MID
	case "qps_whitelist":
		who = "qps_whitelist " + d.MID
	default:
		who = d.Kind
	}
	if d.Action != "changed" || len(d.Fields) == 0 {
		return who + ": " + d.Action
	}
	parts := make([]string, len(d.Fields))
	for i, f := range d.Fields {
		parts[i] = fmt.Sprintf("%s %s → %s", f.Field, orDash(f.Old), orDash(f.New))
	}
	return who + ": " + strings.Join(parts, ", ")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// Diff lists what differs from old to new (old may be nil: everything is added). Generated
// load terminals are compared as their load_terminals entry, not one by one.
func Diff(old, new *Registry) []Difference {
	if old == nil {
		old = NewRegistry(DefaultRules(), nil, nil)
	}
	var out []Difference
	var f fieldDiff
	f.add("cash_mccs", strings.Join(old.Rules.CashMCCs, " "), strings.Join(new.Rules.CashMCCs, " "))
	f.add("qps_limit", FormatAmount(old.Rules.QPSLimit), FormatAmount(new.Rules.QPSLimit))
	f.add("min_sdk_version", old.Rules.MinSDK.String(), new.Rules.MinSDK.String())
	f.add("refund_window_days", strconv.Itoa(old.Rules.RefundWindowDays), strconv.Itoa(new.Rules.RefundWindowDays))
	if len(f) > 0 {
		out = append(out, Difference{Kind: "rules", Action: "changed", Fields: f})
	}
	for _, m := range new.Merchants() {
		o := old.Merchant(m.MID)
		if o == nil {
			out = append(out, Difference{Kind: "merchant", MID: m.MID, Action: "added"})
		} else if f := merchantFields(o, m); len(f) > 0 {
			out = append(out, Difference{Kind: "merchant", MID: m.MID, Action: "changed", Fields: f})
		}
		var was string
		if o != nil {
			was = whitelistDay(o)
		}
		if now := whitelistDay(m); now != was {
			out = append(out, whitelistDiff(m.MID, was, now))
		}
	}
	for _, o := range old.Merchants() {
		if new.Merchant(o.MID) == nil {
			if was := whitelistDay(o); was != "" {
				out = append(out, whitelistDiff(o.MID, was, ""))
			}
			out = append(out, Difference{Kind: "merchant", MID: o.MID, Action: "removed"})
		}
	}
	for _, t := range new.registered() {
		o := old.terminals[t.TID+"|"+t.MID]
		if o == nil {
			out = append(out, Difference{Kind: "terminal", MID: t.MID, TID: t.TID, Action: "added"})
		} else if f := terminalFields(o, t); len(f) > 0 {
			out = append(out, Difference{Kind: "terminal", MID: t.MID, TID: t.TID, Action: "changed", Fields: f})
		}
	}
	for _, o := range old.registered() {
		if new.terminals[o.TID+"|"+o.MID] == nil {
			out = append(out, Difference{Kind: "terminal", MID: o.MID, TID: o.TID, Action: "removed"})
		}
	}
	if d, ok := loadDiff(old.load, new.load); ok {
		out = append(out, d)
	}
	return out
}

func whitelistDay(m *Merchant) string {
	if m.QPSRegistered.IsZero() {
		return ""
	}
	return m.QPSRegistered.Format("2006-01-02")
}

func whitelistDiff(mid, was, now string) Difference {
	d := Difference{Kind: "qps_whitelist", MID: mid, Action: "changed", Fields: []FieldChange{{"date", was, now}}}
	switch {
	case was == "":
		d.Action = "added"
	case now == "":
		d.Action = "removed"
	}
	return d
}

type fieldDiff []FieldChange

func (f *fieldDiff) add(name, old, new string) {
	if old != new {
		*f = append(*f, FieldChange{name, old, new})
	}
}

func (f *fieldDiff) flag(name string, old, new bool) {
	f.add(name, strconv.FormatBool(old), strconv.FormatBool(new))
}

func (f *fieldDiff) key(name string, old, new string) {
	if old != new {
		*f = append(*f, FieldChange{name, "(key)", "(new key)"})
	}
}

func limitText(fen int64) string {
	if fen == 0 {
		return ""
	}
	return FormatAmount(fen)
}

func merchantFields(o, m *Merchant) []FieldChange {
	var f fieldDiff
	f.add("name", o.Name, m.Name)
	f.add("name_en", o.NameEN, m.NameEN)
	f.add("mcc", o.MCC, m.MCC)
	f.flag("enabled", o.Enabled, m.Enabled)
	f.flag("direct", o.Direct, m.Direct)
	f.flag("qps", o.QPS, m.QPS)
	f.add("qps_limit", limitText(o.QPSLimit), limitText(m.QPSLimit))
	f.flag("refund", o.RefundAllowed, m.RefundAllowed)
	f.add("acquirer", o.Acquirer, m.Acquirer)
	f.add("group", o.Group, m.Group)
	return f
}

func terminalFields(o, t *Terminal) []FieldChange {
	var f fieldDiff
	f.add("env", string(o.Env), string(t.Env))
	f.add("serial", o.Serial, t.Serial)
	f.key("tmk", o.TMKText(), t.TMKText())
	f.flag("qps", o.QPS, t.QPS)
	f.flag("enabled", o.Enabled, t.Enabled)
	return f
}

func loadDiff(o, n *loadInfo) (Difference, bool) {
	d := Difference{Kind: "load_terminals", Action: "changed"}
	switch {
	case o == nil && n == nil:
		return d, false
	case o == nil:
		d.Action = "added"
		d.Fields = []FieldChange{{"count", "", strconv.Itoa(n.Count)}}
		return d, true
	case n == nil:
		d.Action = "removed"
		return d, true
	}
	var f fieldDiff
	f.add("count", strconv.Itoa(o.Count), strconv.Itoa(n.Count))
	f.add("mid", o.MID, n.MID)
	f.add("env", string(o.Env), string(n.Env))
	f.key("tmk", tmkText(o.TMK, o.Demo), tmkText(n.TMK, n.Demo))
	f.flag("qps", o.QPS, n.QPS)
	d.Fields = f
	return d, len(f) > 0
}

// Describe is Diff in words, one line per difference.
func Describe(ds []Difference) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.String()
	}
	return slices.Clip(out)
}
