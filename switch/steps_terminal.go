package posswitch

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"

	rc "github.com/shoudan/shoudan/responsecodes"
	"github.com/shoudan/shoudan/spec"
	"github.com/shoudan/shoudan/spec/pos"
	"github.com/shoudan/shoudan/switch/journal"
	"github.com/shoudan/shoudan/switch/metrics"
	"github.com/shoudan/shoudan/terminals"
)

// 1: the frame decoded (the listener answers 30 for frames that did not); here: a known
// transaction with its mandatory fields.
func checkFrame(_ context.Context, _ *Switch, t *Txn) (string, string) {
	k, err := pos.Identify(t.Frame)
	if err != nil {
		return rc.FormatError, err.Error()
	}
	t.Kind = k
	if err := spec.Unmarshal(t.Frame.Msg, &t.Req); err != nil {
		return rc.FormatError, "fields do not fit their types: " + err.Error()
	}
	t.F60, _ = pos.ParseF60(t.Req.Custom)
	return "", ""
}

// 2: TID + MID registered in this listener's environment (and, when bound, from its addresses
// or certificate: Switch.Bind).
func checkTerminal(_ context.Context, s *Switch, t *Txn) (string, string) {
	term := t.Reg.Terminal(t.Req.TID, t.Req.MID)
	if term == nil {
		return rc.UnknownTerminal, fmt.Sprintf("terminal %s of merchant %s is not registered", t.Req.TID, t.Req.MID)
	}
	if !term.Enabled {
		return rc.UnknownTerminal, fmt.Sprintf("terminal %s of merchant %s is disabled", t.Req.TID, t.Req.MID)
	}
	if term.Env != t.Env {
		return rc.UnknownTerminal, fmt.Sprintf("terminal %s is registered in %s but arrived on the %s listener", t.Req.TID, term.Env, t.Env)
	}
	if s != nil && s.Bind != nil { // nil: what-if replays row 2 without a connection
		if err := s.Bind(term, t.Peer); err != nil {
			metrics.Unauthenticated.WithLabelValues("bound_address").Inc()
			return rc.UnknownTerminal, fmt.Sprintf("terminal %s: %v", t.Req.TID, err)
		}
	}
	t.Terminal, t.Merchant = term, t.Reg.Merchant(term.MID)
	return "", ""
}

// 3: financial messages need a current sign-on and batch (reversals: sign-on only, any batch).
// The keys a request may be MACed with are the terminal's current ones and those of its pending
// (unproven) sign-ons whose batch the request names; row 4 finds which, if any, verifies.
func checkSignedOn(ctx context.Context, s *Switch, t *Txn) (string, string) {
	if !t.Kind.Financial {
		return "", ""
	}
	st, err := s.Journal.TerminalState(ctx, t.Req.MID, t.Req.TID)
	if err != nil {
		return rc.SystemMalfunction, "journal unavailable: " + err.Error()
	}
	t.State = st
	reversal := t.Kind == pos.Reversal
	t.keys = t.keys[:0]
	if st.Current() && (reversal || (st.SignedOn && t.F60.Batch == st.Batch)) {
		t.keys = append(t.keys, candidateKeys{sealed: st.KeysEnc})
	}
	if st != nil {
		for i := range st.Pending {
			if p := &st.Pending[i]; reversal || p.Batch == t.F60.Batch {
				t.keys = append(t.keys, candidateKeys{sealed: p.KeysEnc, pending: p})
			}
		}
	}
	if len(t.keys) == 0 {
		if st == nil || (!st.SignedOn && len(st.Pending) == 0) || (!st.Current() && reversal) {
			return rc.SignOnAgain, "terminal has no current sign-on"
		}
		if len(st.Pending) > 0 {
			return rc.SignOnAgain, fmt.Sprintf("batch 60.2 %s is neither the terminal's current batch %s nor that of its pending sign-on %s", t.F60.Batch, st.Batch, st.Pending[0].Batch)
		}
		return rc.SignOnAgain, fmt.Sprintf("batch 60.2 %s is not the terminal's current batch %s", t.F60.Batch, st.Batch)
	}
	for i := range t.keys {
		wk, err := s.Security.OpenKeys(t.keys[i].sealed)
		if err != nil {
			return rc.SystemMalfunction, "working keys unreadable"
		}
		t.keys[i].WorkingKeys = wk
	}
	t.Keys = t.keys[0].WorkingKeys
	return "", ""
}

// candidateKeys are working keys a request may be MACed with: the current ones (pending nil) or
// those of a pending sign-on.
type candidateKeys struct {
	WorkingKeys
	sealed  []byte
	pending *journal.PendingSignOn
}

// 4: the MAC verifies over the bytes as received, under one of the candidate keys. Keys of a
// pending sign-on that verify are proven: they become the terminal's current keys.
func checkMAC(ctx context.Context, s *Switch, t *Txn) (string, string) {
	if !t.Kind.MAC {
		return "", ""
	}
	mab, mac := t.Frame.MAB(), t.Frame.MAC()
	for _, c := range t.keys {
		if want, err := c.MAC(mab); err != nil || subtle.ConstantTimeCompare(want[:], mac) != 1 {
			continue
		}
		t.Keys = c.WorkingKeys
		if c.pending != nil {
			return s.proveSignOn(ctx, t, c.pending)
		}
		if t.State.ProvenFrom == "" && t.Peer.ip() != "" { // keys made current before addresses were recorded
			if err := s.Journal.SetProvenFrom(ctx, t.Req.MID, t.Req.TID, t.Peer.ip()); err != nil {
				s.Log.Warn("proven address not recorded", "tid", t.Req.TID, "err", err.Error())
			}
		}
		return "", ""
	}
	return rc.MACFailed, "field 64 does not verify under the terminal's MAC key"
}

// 5: device compliance (not asked of reversals).
func checkDevice(_ context.Context, _ *Switch, t *Txn) (string, string) {
	if !t.Kind.Financial || t.Kind == pos.Reversal {
		return "", ""
	}
	d, err := pos.ParseDevice(t.Req.Device)
	if errors.Is(err, pos.ErrNoDevice) || (err == nil && (d.Serial == "" || d.Version == "")) {
		return rc.Violation, "field 59 lacks device information A2 with serial number (02) and SDK version (05)"
	}
	if err != nil {
		return rc.Violation, err.Error()
	}
	if code, reason := deviceCompliance(d.Serial, d.Version, t.Terminal, &t.Reg.Rules); code != "" {
		return code, reason
	}
	if d.Random != "" || d.CheckValue != "" {
		want, err := t.Keys.MAC([]byte(d.Serial + d.Random))
		if err != nil || subtle.ConstantTimeCompare(want[:], []byte(d.CheckValue)) != 1 {
			t.devCheck = devCheckBad
			return rc.Violation, "serial-number check value (A2 tag 04) is wrong"
		}
		t.devCheck = devCheckGood
	}
	return "", ""
}

// deviceCompliance is the part of rule 5 that reads the registry and the rules: the serial number
// matches the terminal's, the SDK version is new enough. What-if re-runs it under a draft config.
func deviceCompliance(serial, version string, term *terminals.Terminal, rules *terminals.Rules) (string, string) {
	if serial != term.Serial {
		return rc.Violation, fmt.Sprintf("device serial number %q does not match the registered %q", serial, term.Serial)
	}
	v, err := terminals.ParseVersion(version)
	if err != nil {
		return rc.Violation, "SDK " + err.Error()
	}
	if v.Less(rules.MinSDK) {
		return rc.Violation, fmt.Sprintf("SDK version %s is older than the required %s", v, rules.MinSDK)
	}
	return "", ""
}

// The device check value (F59 A2 tag 04) as journaled (journal.Inputs.DevCheck).
const (
	devCheckNone       = ""
	devCheckGood       = "G"
	devCheckBad        = "B"
	devCheckUnverified = "?"
	devCheckMissing    = "-"
)

// deviceInputs are the F59 values journaled for what-if: serial, SDK version and the state of the
// check value (verified only when rule 5 got that far).
func deviceInputs(t *Txn) (serial, sdk, check string) {
	d, err := pos.ParseDevice(t.Req.Device)
	if err != nil || d.Serial == "" || d.Version == "" {
		return d.Serial, d.Version, devCheckMissing
	}
	switch {
	case d.Random == "" && d.CheckValue == "":
		check = devCheckNone
	case t.devCheck != "":
		check = t.devCheck
	default:
		check = devCheckUnverified
	}
	return d.Serial, d.Version, check
}
