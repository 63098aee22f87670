package whatif

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/shoudan/shoudan/terminals"
)

// maxDiffLines bounds the lines Diff writes for one kind of change (added terminals, say); the
// rest is counted.
const maxDiffLines = 20

// Diff says in words what draft changes against live: the rules, merchants and terminals that
// the acquirer checks read.
func Diff(live, draft *terminals.Registry) []string {
	var out []string
	lr, dr := live.Rules, draft.Rules
	if lr.QPSLimit != dr.QPSLimit {
		out = append(out, fmt.Sprintf("rules.qps_limit (双免 no-PIN limit) %s → %s", terminals.FormatAmount(lr.QPSLimit), terminals.FormatAmount(dr.QPSLimit)))
	}
	if lr.MinSDK != dr.MinSDK {
		out = append(out, fmt.Sprintf("rules.min_sdk_version %s → %s", lr.MinSDK, dr.MinSDK))
	}
	if lr.RefundWindowDays != dr.RefundWindowDays {
		out = append(out, fmt.Sprintf("rules.refund_window_days %d → %d", lr.RefundWindowDays, dr.RefundWindowDays))
	}
	if add, del := setDiff(lr.CashMCCs, dr.CashMCCs); len(add)+len(del) > 0 {
		s := "rules.cash_mccs"
		if len(add) > 0 {
			s += " +" + strings.Join(add, " +")
		}
		if len(del) > 0 {
			s += " -" + strings.Join(del, " -")
		}
		out = append(out, s)
	}
	var ms []string
	for _, d := range draft.Merchants() {
		l := live.Merchant(d.MID)
		if l == nil {
			ms = append(ms, fmt.Sprintf("merchant %s (%s) added", d.MID, d.Name))
			continue
		}
		var f []string
		flag := func(name string, a, b bool) {
			if a != b {
				f = append(f, fmt.Sprintf("%s %t → %t", name, a, b))
			}
		}
		str := func(name, a, b string) {
			if a != b {
				f = append(f, fmt.Sprintf("%s %q → %q", name, a, b))
			}
		}
		flag("enabled", l.Enabled, d.Enabled)
		flag("direct", l.Direct, d.Direct)
		flag("qps", l.QPS, d.QPS)
		flag("refund", l.RefundAllowed, d.RefundAllowed)
		str("mcc", l.MCC, d.MCC)
		str("name_en", l.NameEN, d.NameEN)
		if !l.QPSRegistered.Equal(d.QPSRegistered) {
			f = append(f, fmt.Sprintf("双免 whitelist %s → %s", date(l.QPSRegistered), date(d.QPSRegistered)))
		}
		if len(f) > 0 {
			ms = append(ms, fmt.Sprintf("merchant %s (%s): %s", d.MID, d.Name, strings.Join(f, ", ")))
		}
	}
	for _, l := range live.Merchants() {
		if draft.Merchant(l.MID) == nil {
			ms = append(ms, fmt.Sprintf("merchant %s (%s) removed", l.MID, l.Name))
		}
	}
	out = append(out, capped(ms, "merchant changes")...)
	var ts []string
	for _, d := range draft.Terminals() {
		l := live.Terminal(d.TID, d.MID)
		if l == nil {
			ts = append(ts, fmt.Sprintf("terminal %s of %s added", d.TID, d.MID))
			continue
		}
		var f []string
		if l.Env != d.Env {
			f = append(f, fmt.Sprintf("env %s → %s", l.Env, d.Env))
		}
		if l.Serial != d.Serial {
			f = append(f, fmt.Sprintf("serial %q → %q", l.Serial, d.Serial))
		}
		if l.QPS != d.QPS {
			f = append(f, fmt.Sprintf("qps %t → %t", l.QPS, d.QPS))
		}
		if len(f) > 0 {
			ts = append(ts, fmt.Sprintf("terminal %s of %s: %s", d.TID, d.MID, strings.Join(f, ", ")))
		}
	}
	for _, l := range live.Terminals() {
		if draft.Terminal(l.TID, l.MID) == nil {
			ts = append(ts, fmt.Sprintf("terminal %s of %s removed", l.TID, l.MID))
		}
	}
	return append(out, capped(ts, "terminal changes")...)
}

func capped(lines []string, what string) []string {
	if len(lines) <= maxDiffLines {
		return lines
	}
	return append(lines[:maxDiffLines:maxDiffLines], fmt.Sprintf("… and %d more %s", len(lines)-maxDiffLines, what))
}

func setDiff(a, b []string) (added, removed []string) {
	for _, x := range b {
		if !slices.Contains(a, x) {
			added = append(added, x)
		}
	}
	for _, x := range a {
		if !slices.Contains(b, x) {
			removed = append(removed, x)
		}
	}
	return added, removed
}

func date(t time.Time) string {
	if t.IsZero() {
		return "none"
	}
	return t.Format("2006-01-02")
}
