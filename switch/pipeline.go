// Package posswitch is the switch: the terminal listener, the decision pipeline (one small named
// step per rule of docs/protocol.md §7, in that order, declared in Steps) and the transaction
// handlers that journal and route what passes.
package posswitch

import (
	"context"
	"github.com/shoudan/shoudan/issuerlink"
	"time"

	"github.com/shoudan/shoudan/spec/pos"
	"github.com/shoudan/shoudan/switch/journal"
	"github.com/shoudan/shoudan/terminals"
)

// Txn is one transaction on its way through the switch.
type Txn struct {
	Env       terminals.Environment
	Peer      Peer // where the frame came from
	Now       time.Time
	Frame     *pos.Frame
	Kind      *pos.Kind
	Req       pos.Request
	F60       pos.F60
	Reg       *terminals.Registry
	Terminal  *terminals.Terminal
	Merchant  *terminals.Merchant
	State     *journal.TerminalState
	Keys      WorkingKeys  // nil until the terminal's sign-on is found
	Orig      *journal.Txn // the original of a void, refund or reversal
	Record    *journal.Txn // the journal row
	Decision  Decision
	Code      string          // the response code answered
	Trace     []Decision      // the decisions made, in order
	Passed    []string        // the acquirer checks passed, in order
	IssuerRTT time.Duration   // the issuer's round trip, when it went upstream
	devCheck  string          // the device check value's verdict, once rule 5 checked it
	start     time.Time       // wall clock at arrival (Now is the switch's business clock)
	keys      []candidateKeys // the keys rows 3-4 may verify the MAC with (current, pending sign-ons)

	// the issuer route of a request for the issuer, and where it went
	Route string
	Via   *issuerlink.Via
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

// Steps are docs/protocol.md §7 in order; the first that declines answers.
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
	{"refund-allowed", checkRefundAllowed},   // 18 → 58
	{"refund-original", checkRefundOriginal}, // 19: found, a later day → 25
	{"refund-window", checkRefundWindow},     // 19: within the refund window → 12
	{"refund-amount", checkRefundAmount},     // 19–20: approved, amount left, same card → 12 13 14
}

// decide runs the steps; the decision of the first decline is kept with its trace.
func (s *Switch) decide(ctx context.Context, t *Txn) bool {
	for _, st := range Steps {
		code, reason := st.Check(ctx, s, t)
		if code == "" {
			t.Passed = append(t.Passed, st.Rule)
			continue
		}
		t.Decision = Decision{Rule: st.Rule, Code: code, Reason: reason}
		t.Trace = append(t.Trace, t.Decision)
		return false
	}
	t.Decision = Decision{Rule: journal.PassedRule, Code: "", Reason: journal.PassedReason}
	t.Trace = append(t.Trace, t.Decision)
	return true
}

// RuleDoc says, for an operator, what each rule checks: its row of docs/protocol.md §7 and its
// meaning. Rules beyond the acquirer checks (issuer, journal, recovery) are listed too.
var RuleDoc = map[string]string{
	"frame":                 "§7 row 1: the frame decodes, with no trailing bytes and every mandatory field",
	"terminal":              "§7 row 2: TID + MID registered in this listener's environment",
	"signed-on":             "§7 row 3: a current sign-on, and 60.2 is the terminal's current batch",
	"mac":                   "§7 row 4: the MAC (F64) verifies under the terminal's MAC key",
	"device":                "§7 row 5: device information F59 A2 present, serial matches, SDK new enough, check value right",
	"merchant-trading":      "§7 row 6: merchant enabled and its direct connection (直联) configured",
	"merchant-english-name": "§7 row 7: merchant English name present",
	"mcc-matches":           "§7 row 8: F18, when sent, equals the merchant's MCC",
	"cash-mcc":              "§7 row 9: no purchase at a cash / quasi-cash MCC",
	"qps-enabled":           "§7 row 10: contactless no-PIN (双免): merchant and terminal both enabled",
	"qps-whitelist":         "§7 row 11: 双免: merchant on the whitelist, registered before today (T+1)",
	"qps-limit":             "§7 row 12: 双免: amount within the no-PIN limit",
	"duplicate":             "§7 row 13: same MID, TID, batch, STAN and MTI today",
	"void-original":         "§7 rows 14-17: a void's original: found, same entry mode, approved, same amount and card",
	"refund-allowed":        "§7 row 18: a refund: the merchant is allowed to refund",
	"refund-original":       "§7 row 19: a refund's original purchase found by MID + RRN + date, from an earlier day",
	"refund-window":         "§7 row 19: a refund's original within the refund window",
	"refund-amount":         "§7 rows 19-20: a refund's original approved, the amount within what is left, the same card",
	"issuer-link":           "§7 row 21: a route to the issuer",
	"issuer-timeout":        "§7 row 22: an answer from the issuer in time (otherwise 98 and an automatic reversal)",
	"issuer":                "the issuer's own decision, passed through",
	"journal":               "the journal must record the transaction durably before any approval",
	"reversal":              "reversals are answered 00 unless the amount differs from the original's",
	"reversal-amount":       "a reversal's amount must equal its original's",
	"pin":                   "the PIN block must decrypt under the terminal's PIN key",
	"recovery":              "closed by crash recovery at start-up",
	"acquirer-checks":       "passed every acquirer check",
}
