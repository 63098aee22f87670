package posswitch

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"time"

	rc "github.com/shoudan/shoudan/responsecodes"
	"github.com/shoudan/shoudan/switch/journal"
	"github.com/shoudan/shoudan/switch/metrics"
	"github.com/shoudan/shoudan/terminals"
)

// Sign-on (0800) and sign-off (0820) carry no MAC (protocol.md §6): anyone who can reach the port
// and has read a receipt (TID, MID) can send them. The defence (docs/security-unauthenticated.md):
//
//   - a sign-on never takes the terminal's current keys away: its keys are pending until the
//     terminal's first request MACed with them proves it holds the TMK (checkMAC), and until
//     then the current keys and batch keep working;
//   - sign-ons from an address other than the one the terminal proved its keys from are limited
//     per terminal (SignOnLimit); beyond it they are answered 65 and change nothing;
//   - every sign-on records its source; one from a new address, or over the limit, raises an
//     alert (log + shoudan_unauthenticated_alerts_total);
//   - a sign-off is honoured only from the address the terminal proved its keys from (or when
//     it has none); from elsewhere it is answered 00, recorded with the rejects, and ignored.

// SignOnLimit bounds the sign-ons a terminal may make from addresses other than the one it proved
// its current keys from: Max within Window (per node).
type SignOnLimit struct {
	Max    int
	Window time.Duration
}

// DefaultSignOnLimit: a terminal signs on a few times a day; 6 in 10 minutes is generous.
var DefaultSignOnLimit = SignOnLimit{Max: 6, Window: 10 * time.Minute}

// signOnLog is the recent sign-ons of each terminal on this node (registered terminals only:
// an unregistered TID never gets this far, so the map is bounded by the registry).
type signOnLog struct {
	mu sync.Mutex
	m  map[string][]time.Time
}

// allow records a sign-on at now and reports whether it is within l.
func (g *signOnLog) allow(key string, now time.Time, l SignOnLimit) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.m == nil {
		g.m = map[string][]time.Time{}
	}
	ts := g.m[key]
	i := 0
	for i < len(ts) && now.Sub(ts[i]) >= l.Window {
		i++
	}
	ts = ts[i:]
	if len(ts) >= l.Max {
		g.m[key] = ts
		return false
	}
	g.m[key] = append(ts, now)
	return true
}

func (s *Switch) signOnLimit() SignOnLimit {
	l := s.SignOnLimit
	if l.Max <= 0 {
		l.Max = DefaultSignOnLimit.Max
	}
	if l.Window <= 0 {
		l.Window = DefaultSignOnLimit.Window
	}
	return l
}

// ip is the peer's address without the port ("" when unknown).
func (p Peer) ip() string {
	if !p.Addr.IsValid() {
		return ""
	}
	return p.Addr.Addr().Unmap().String()
}

// fromProvenAddress reports whether the frame comes from the address the terminal proved its
// current keys from.
func fromProvenAddress(st *journal.TerminalState, p Peer) bool {
	return st != nil && st.ProvenFrom != "" && st.ProvenFrom == p.ip()
}

// admitSignOn decides whether a sign-on may add pending keys: "" to go on, or the code and reason
// that refuse it (recorded with the rejects, nothing changed).
func (s *Switch) admitSignOn(t *Txn, st *journal.TerminalState) (code, reason string) {
	if fromProvenAddress(st, t.Peer) {
		return "", ""
	}
	if st.Current() && st.ProvenFrom != "" {
		metrics.Unauthenticated.WithLabelValues("new_address").Inc()
		s.Log.Warn("sign-on from a new address", "tid", t.Req.TID, "mid", t.Req.MID, "source", t.Peer.String(), "proven_from", st.ProvenFrom)
	}
	l := s.signOnLimit()
	if !s.signOns.allow(t.Req.MID+"|"+t.Req.TID, time.Now(), l) {
		metrics.Unauthenticated.WithLabelValues("rate").Inc()
		s.Log.Warn("sign-on over the limit: refused", "tid", t.Req.TID, "mid", t.Req.MID, "source", t.Peer.String(), "max", l.Max, "window", l.Window.String())
		return rc.ExceedsFrequency, fmt.Sprintf("more than %d sign-ons in %s from addresses other than the one the terminal proved its keys from (%s)",
			l.Max, l.Window, orNone(st))
	}
	return "", ""
}

func orNone(st *journal.TerminalState) string {
	if st == nil || st.ProvenFrom == "" {
		return "none yet"
	}
	return st.ProvenFrom
}

// proveSignOn makes the pending sign-on whose keys verified the request's MAC current.
func (s *Switch) proveSignOn(ctx context.Context, t *Txn, p *journal.PendingSignOn) (string, string) {
	ok, err := s.Journal.ProveSignOn(ctx, t.Req.MID, t.Req.TID, *p, t.Peer.ip())
	if err != nil {
		return rc.SystemMalfunction, "journal unavailable: the sign-on these keys came from could not be made current"
	}
	if !ok {
		return rc.SignOnAgain, "the sign-on these keys came from was superseded meanwhile: sign on again"
	}
	metrics.SignOns.WithLabelValues("proven").Inc()
	t.State = &journal.TerminalState{Batch: p.Batch, SignedOn: true, KeysEnc: p.KeysEnc, Operator: p.Operator, ProvenFrom: t.Peer.ip()}
	s.Log.Info("sign-on proven", "tid", t.Req.TID, "mid", t.Req.MID, "batch", p.Batch, "source", t.Peer.String(), "signed_on_from", p.Source)
	return "", ""
}

// ignore answers an unauthenticated management message 00 without acting on it, and records it
// with the rejects under rule with reason.
func (s *Switch) ignore(t *Txn, rule, reason string) {
	metrics.Unauthenticated.WithLabelValues(rule).Inc()
	s.Log.Warn("unauthenticated message ignored", "kind", t.Kind.Name, "tid", t.Req.TID, "mid", t.Req.MID, "source", t.Peer.String(), "reason", reason)
	d := t.Decision
	t.Decision = Decision{Rule: rule, Code: rc.Approved, Reason: reason}
	s.reject(t)
	t.Decision = d
}

// Binding is the source address ranges registered terminals are bound to (config "bind"); a
// terminal not listed is not bound.
type Binding map[string][]netip.Prefix // MID|TID → ranges

// Add binds terminal tid of merchant mid to ranges.
func (b Binding) Add(mid, tid string, ranges ...netip.Prefix) {
	b[mid+"|"+tid] = append(b[mid+"|"+tid], ranges...)
}

// Check is a Switch.Bind: a bound terminal's frames are accepted only from its ranges.
func (b Binding) Check(term *terminals.Terminal, p Peer) error {
	ranges, ok := b[term.MID+"|"+term.TID]
	if !ok {
		return nil
	}
	a := p.Addr.Addr().Unmap()
	for _, r := range ranges {
		if r.Contains(a) {
			return nil
		}
	}
	return fmt.Errorf("frames from %s are refused: the terminal is bound to %v", p.ip(), ranges)
}
