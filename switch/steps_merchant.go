package posswitch

import (
	"context"
	"fmt"

	rc "github.com/shoudan/shoudan/responsecodes"
	"github.com/shoudan/shoudan/spec/pos"
	"github.com/shoudan/shoudan/terminals"
)

func financialNonReversal(t *Txn) bool { return t.Kind.Financial && t.Kind != pos.Reversal }

// 6: the merchant may trade: enabled, and its direct connection (直联) configured.
func checkTrading(_ context.Context, _ *Switch, t *Txn) (string, string) {
	if !financialNonReversal(t) {
		return "", ""
	}
	switch {
	case !t.Merchant.Enabled:
		return rc.SystemMalfunction, "merchant is disabled"
	case !t.Merchant.Direct:
		return rc.SystemMalfunction, "merchant's direct connection (直联) is not configured"
	}
	return "", ""
}

// 7: the merchant's English name is present.
func checkEnglishName(_ context.Context, _ *Switch, t *Txn) (string, string) {
	if financialNonReversal(t) && t.Merchant.NameEN == "" {
		return rc.ReconcileError, "merchant has no English name"
	}
	return "", ""
}

// 8: F18, when sent, equals the merchant's MCC.
func checkMCC(_ context.Context, _ *Switch, t *Txn) (string, string) {
	if financialNonReversal(t) && t.Req.MCC != "" && t.Req.MCC != t.Merchant.MCC {
		return rc.InvalidMerchant, fmt.Sprintf("F18 MCC %s contradicts the merchant's MCC %s", t.Req.MCC, t.Merchant.MCC)
	}
	return "", ""
}

// 9: no purchase at a cash / quasi-cash MCC.
func checkCashMCC(_ context.Context, _ *Switch, t *Txn) (string, string) {
	if t.Kind == pos.Purchase && t.Reg.Rules.IsCash(t.Merchant.MCC) {
		return rc.ReconcileError, fmt.Sprintf("MCC %s is on the cash / quasi-cash list: purchase not allowed", t.Merchant.MCC)
	}
	return "", ""
}

// qps reports a contactless no-PIN purchase (小额双免): F22 072 and no PIN block.
func qps(t *Txn) bool {
	return t.Kind == pos.Purchase && t.Req.EntryMode == "072" && len(t.Req.PINBlock) == 0
}

// 10: merchant and terminal both enabled for 双免.
func checkQPSEnabled(_ context.Context, _ *Switch, t *Txn) (string, string) {
	if !qps(t) {
		return "", ""
	}
	switch {
	case !t.Merchant.QPS:
		return rc.ReconcileError, "merchant is not enabled for contactless no-PIN (双免)"
	case !t.Terminal.QPS:
		return rc.ReconcileError, "terminal is not enabled for contactless no-PIN (双免)"
	}
	return "", ""
}

// 11: merchant on the 双免 whitelist, registered before today (effective T+1).
func checkQPSWhitelist(_ context.Context, _ *Switch, t *Txn) (string, string) {
	if !qps(t) || t.Merchant.OnWhitelist(t.Now) {
		return "", ""
	}
	if t.Merchant.QPSRegistered.IsZero() {
		return rc.InvalidMerchant, "merchant is not on the 双免 whitelist"
	}
	return rc.InvalidMerchant, fmt.Sprintf("merchant's 双免 whitelist registration of %s takes effect the next day", t.Merchant.QPSRegistered.Format("2006-01-02"))
}

// 12: amount within the no-PIN limit (the merchant's own, or the rules').
func checkQPSLimit(_ context.Context, _ *Switch, t *Txn) (string, string) {
	if limit := t.Reg.QPSLimit(t.Merchant); qps(t) && t.Req.Amount > limit {
		whose := "the"
		if t.Merchant.QPSLimit > 0 {
			whose = "the merchant's"
		}
		return rc.IncorrectPIN, fmt.Sprintf("amount %s is over %s no-PIN limit %s: PIN required",
			terminals.FormatAmount(t.Req.Amount), whose, terminals.FormatAmount(limit))
	}
	return "", ""
}
