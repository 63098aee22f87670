package posswitch

import (
	"crypto/tls"
	"net"
	"net/netip"
	"regexp"

	"github.com/shoudan/shoudan/spec"
	"github.com/shoudan/shoudan/spec/pos"
	"github.com/shoudan/shoudan/switch/journal"
	"github.com/shoudan/shoudan/switch/metrics"
)

// Peer is where a frame came from: the remote address of its connection and, on a TLS listener,
// the connection state (the client certificate a terminal may be bound to, issue 17).
type Peer struct {
	Addr netip.AddrPort
	TLS  *tls.ConnectionState
}

// PeerOf is the peer of a connection.
func PeerOf(c net.Conn) Peer {
	var p Peer
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		p.Addr = a.AddrPort()
	}
	if tc, ok := c.(interface{ ConnectionState() tls.ConnectionState }); ok {
		st := tc.ConnectionState()
		p.TLS = &st
	}
	return p
}

func (p Peer) String() string {
	if !p.Addr.IsValid() {
		return "unknown"
	}
	return p.Addr.String()
}

// unauthenticated are the rules of protocol.md §7 rows 1-4: a request they decline has not
// proved it comes from the terminal it names, so it changes no state. It is answered, logged and
// counted, and recorded in the rejects table instead of the journal: it takes no duplicate key,
// is never a terminal's last transaction, and touches no batch, total or original.
var unauthenticated = map[string]bool{"frame": true, "terminal": true, "signed-on": true, "mac": true}

// Unauthenticated reports whether a decision's rule is one of §7 rows 1-4.
func Unauthenticated(rule string) bool { return unauthenticated[rule] }

// reject records a request declined before it was authenticated.
func (s *Switch) reject(t *Txn) {
	r := &journal.Reject{Env: string(t.Env), Source: t.Peer.String(), MID: t.Req.MID, TID: t.Req.TID, Batch: t.F60.Batch, STAN: t.Req.STAN,
		Code: t.Decision.Code, Rule: t.Decision.Rule, Reason: maskDigits(t.Decision.Reason), FrameLen: len(t.Frame.Raw),
		FrameHash: s.Journal.Vault.RequestHash(t.Frame.Raw)}
	r.MTI, _ = t.Frame.Msg.GetMTI()
	if t.Kind != nil {
		r.Kind = t.Kind.Name
		if t.Kind.Financial {
			r.Amount, r.PANMasked = t.Req.Amount, spec.MaskPAN(cardPAN(&t.Req))
		}
	}
	s.recordReject(r)
}

// rejectRaw records a frame that did not decode (answered 30, or the connection closed).
func (s *Switch) rejectRaw(env string, peer Peer, raw []byte, mti, reason string) {
	s.recordReject(&journal.Reject{Env: env, Source: peer.String(), MTI: mti, Code: "30", Rule: "frame", Reason: maskDigits(reason),
		FrameLen: len(raw), FrameHash: s.Journal.Vault.RequestHash(raw)})
}

func (s *Switch) recordReject(r *journal.Reject) {
	metrics.Rejects.WithLabelValues(r.Env, r.Rule, r.Code).Inc()
	if !s.Journal.RecordReject(r) {
		metrics.RejectsDropped.Inc()
	}
}

// digitRun is a run of digits as long as a CUP card number (16-19; a MID has 15).
var digitRun = regexp.MustCompile(`[0-9]{16,19}`)

// maskDigits masks anything in a reason that could be a PAN (the codec's errors carry no field
// contents, but a reason is operator-visible text built from an unauthenticated frame).
func maskDigits(s string) string {
	return digitRun.ReplaceAllStringFunc(s, spec.MaskPAN)
}

// headMTI is the MTI of a frame whose head can be read, or "".
func headMTI(raw []byte) string {
	var h pos.HeadField
	if _, err := h.Unpack(raw); err != nil {
		return ""
	}
	return h.Head.MTI
}
