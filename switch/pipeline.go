// Package posswitch is the switch: the terminal listener, the decision pipeline (one small named
// step per rule of protocol.md §7, in that order, declared in Steps) and the transaction
// handlers that journal and route what passes.
package posswitch

import (
	"context"
	"time"

	"github.com/shoudan/shoudan/spec/keys"
	"github.com/shoudan/shoudan/spec/pos"
	"github.com/shoudan/shoudan/switch/journal"
	"github.com/shoudan/shoudan/terminals"
)

// Txn is one transaction on its way through the switch.
type Txn struct {
	Env      terminals.Environment
	Now      time.Time
	Frame    *pos.Frame
	Kind     *pos.Kind
	Req      pos.Request
	F60      pos.F60
	Reg      *terminals.Registry
	Terminal *terminals.Terminal
	Merchant *terminals.Merchant
	State    *journal.TerminalState
	Keys     keys.WorkingKeys
	Orig     *journal.Txn // the original of a void, refund or reversal
	Record   *journal.Txn // the journal row
	Decision Decision
	Code     string     // the response code answered
	Trace    []Decision // every step that ran and what it found
}

// Decision is what a step concluded: the rule, the code and a sentence an operator understands.
type Decision struct {
	Rule   string `json:"rule"`
	Code   string `json:"code"`
	Reason string `json:"reason"`
}

// Step is one acquirer check. It returns a decline (code and reason) or "" to continue.
type Step struct {
	Rule  string
	Check func(ctx context.Context, s *Switch, t *Txn) (code, reason string)
}

// Steps are protocol.md §7 in order; the first that declines answers.
var Steps = []Step{
	{"frame", checkFrame},              // 1  → 30
	{"terminal", checkTerminal},        // 2  → 97
	{"signed-on", checkSignedOn},       // 3  → 77
	{"mac", checkMAC},                  // 4  → A0
	{"device", checkDevice},            // 5  → 93
	{"merchant-trading", checkTrading}, // 6  → 96
	{"merchant-english-name", checkEnglishName},
	{"mcc-matches", checkMCC},            // 8  → 03
	{"cash-mcc", checkCashMCC},           // 9  → 95
	{"qps-enabled", checkQPSEnabled},     // 10 → 95
	{"qps-whitelist", checkQPSWhitelist}, // 11 → 03
	{"qps-limit", checkQPSLimit},         // 12 → 55
	// 13 (duplicate) is the journal's unique key: see journalRequest
	{"void-original", checkVoidOriginal},     // 14–17
	{"refund-original", checkRefundOriginal}, // 18–20
}

// decide runs the steps; the decision of the first decline is kept with its trace.
func (s *Switch) decide(ctx context.Context, t *Txn) bool {
	for _, st := range Steps {
		code, reason := st.Check(ctx, s, t)
		if code == "" {
			continue
		}
		t.Decision = Decision{Rule: st.Rule, Code: code, Reason: reason}
		t.Trace = append(t.Trace, t.Decision)
		return false
	}
	t.Decision = Decision{Rule: "acquirer-checks", Code: "", Reason: "passed every acquirer check"}
	t.Trace = append(t.Trace, t.Decision)
	return true
}
