package posswitch

import (
	"context"
	"strings"
	"time"

	rc "github.com/shoudan/shoudan/responsecodes"
	"github.com/shoudan/shoudan/spec/pos"
	"github.com/shoudan/shoudan/switch/journal"
	"github.com/shoudan/shoudan/terminals"
)

// What-if re-runs the acquirer checks of a journaled transaction under another config. The steps
// that read the config are re-run with the transaction's journaled inputs; the others (frame,
// sign-on, MAC, the device check value, the originals of voids and refunds) read state of the
// moment (keys, the journal), so they keep the outcome they had. A step that keeps its outcome
// but was never reached at the time (an earlier step declined) leaves the new decision
// undetermined: what-if says so rather than guess.

// replayed re-runs a config-reading step on a reconstructed transaction.
var replayed = map[string]bool{
	"terminal": true, "device": true,
	"merchant-trading": true, "merchant-english-name": true, "mcc-matches": true, "cash-mcc": true,
	"qps-enabled": true, "qps-whitelist": true, "qps-limit": true,
	"refund-allowed": true, "refund-window": true,
}

// Redecision is what a draft config would have decided.
type Redecision struct {
	Decision // the step that would decline (Code ""): every acquirer check would pass)
	// Undetermined names the step that would now have to decide but was not evaluated at the
	// time (it reads keys or journal state of that moment); Decision is then empty.
	Undetermined string
}

// Passes reports that every acquirer check would pass: the request would go on (upstream).
func (r Redecision) Passes() bool { return r.Undetermined == "" && r.Code == "" }

// Redecide re-runs protocol §7 rows 2-12 and 18-20 of rec under reg. origDay is the local day of
// a refund's original (zero when the refund found none). It reads nothing and sends nothing.
func Redecide(reg *terminals.Registry, rec *journal.Txn, origDay time.Time) Redecision {
	kind := pos.KindByName(rec.Kind)
	if kind == nil {
		return Redecision{Undetermined: "frame"}
	}
	y, m, d := rec.LocalDay.Date()
	t := &Txn{
		Env: terminals.Environment(rec.Env), Now: time.Date(y, m, d, 12, 0, 0, 0, time.Local), Kind: kind, Reg: reg,
	}
	t.Req.MID, t.Req.TID, t.Req.MCC = rec.MID, rec.TID, rec.Inputs.ReqMCC
	t.Req.EntryMode, t.Req.Amount = rec.EntryMode, rec.Amount
	if rec.Inputs.HasPIN {
		t.Req.PINBlock = []byte{0} // only its presence is journaled, and only its presence is read
	}
	if !origDay.IsZero() {
		t.Orig = &journal.Txn{LocalDay: origDay}
	}
	recorded := func(rule string) (code, reason string, known bool) {
		if rec.Rule == rule {
			return rec.RespCode, rec.Reason, true
		}
		return "", "", inList(rec.Trace, rule)
	}
	for _, st := range Steps {
		var code, reason string
		switch {
		case st.Rule == "device":
			code, reason = redecideDevice(t, rec, recorded)
			if code == "?" {
				return Redecision{Undetermined: st.Rule}
			}
		case st.Rule == "refund-window" && t.Orig == nil:
			// no original was found at the time: refund-original kept its decline, or was not reached
			if kind == pos.Refund {
				return Redecision{Undetermined: "refund-original"}
			}
		case replayed[st.Rule]:
			code, reason = st.Check(context.Background(), nil, t)
		case !applies(st.Rule, kind):
		default:
			var known bool
			if code, reason, known = recorded(st.Rule); !known {
				return Redecision{Undetermined: st.Rule}
			}
		}
		if code != "" {
			return Redecision{Decision: Decision{Rule: st.Rule, Code: code, Reason: reason}}
		}
	}
	return Redecision{}
}

// inList reports whether the comma-separated list holds item.
func inList(list, item string) bool {
	for list != "" {
		var head string
		head, list, _ = strings.Cut(list, ",")
		if head == item {
			return true
		}
	}
	return false
}

// applies reports whether a step that keeps its recorded outcome looks at this kind at all (the
// others pass it by, whether or not they were reached).
func applies(rule string, k *pos.Kind) bool {
	switch rule {
	case "frame":
		return true
	case "signed-on":
		return k.Financial
	case "mac":
		return k.MAC
	case "void-original":
		return k == pos.Void
	case "refund-original", "refund-amount":
		return k == pos.Refund
	}
	return true
}

// redecideDevice is rule 5 from the journaled F59 values: compliance under the draft, the check
// value as it was verified. "?" = the check value was sent but never verified.
func redecideDevice(t *Txn, rec *journal.Txn, recorded func(string) (string, string, bool)) (string, string) {
	if !t.Kind.Financial || t.Kind == pos.Reversal {
		return "", ""
	}
	in := rec.Inputs
	if in.DevSerial == "" && in.DevCheck == devCheckNone {
		return "?", "" // journaled before the decision inputs were kept
	}
	if in.DevCheck == devCheckMissing {
		if code, reason, _ := recorded("device"); code != "" {
			return code, reason
		}
		return rc.Violation, "field 59 lacks device information A2 with serial number (02) and SDK version (05)"
	}
	if code, reason := deviceCompliance(in.DevSerial, in.DevSDK, t.Terminal, &t.Reg.Rules); code != "" {
		return code, reason
	}
	switch in.DevCheck {
	case devCheckBad:
		return rc.Violation, "serial-number check value (A2 tag 04) is wrong"
	case devCheckUnverified:
		return "?", ""
	}
	return "", ""
}
