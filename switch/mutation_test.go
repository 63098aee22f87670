package posswitch_test

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	rc "github.com/shoudan/shoudan/responsecodes"
	"github.com/shoudan/shoudan/spec/keys"
	"github.com/shoudan/shoudan/spec/pos"
	"github.com/shoudan/shoudan/switch/journal"
	"github.com/shoudan/shoudan/switch/switchtest"
	"github.com/shoudan/shoudan/terminals"
	"github.com/shoudan/shoudan/terminals/device"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// mutator sends damaged copies of the genuine terminal's frames from attackerAddr, on its own
// connections, before each genuine frame goes out: random bit flips anywhere (TPDU, header,
// bitmap, fields, MAC), truncations, extensions, a LEN that disagrees with the bytes, and
// damaged replays of earlier frames.
type mutator struct {
	t    *testing.T
	addr string
	rng  *rand.Rand
	conn net.Conn
	past [][]byte
	// what happened to the damaged frames
	sent, answered, closed int
	collisions             int // damaged frames the protocol's MAC cannot detect (not sent)
	codes                  map[string]int
	tak                    func() []byte // the terminal's current MAC key
}

func (m *mutator) attack(frame []byte, n int) {
	for range n {
		w := m.mutate(frame)
		if m.undetectable(frame, w) {
			m.collisions++
			continue
		}
		m.send(w)
	}
	m.past = append(m.past, append([]byte(nil), frame...))
}

// undetectable reports a damaged frame whose MAC still verifies under the terminal's key although
// the bytes it covers changed. The CUP "ECB" MAC (protocol.md §6) XORs the message's 8-byte blocks
// together before encrypting, so flipping the same bit in two blocks cancels out: such a frame
// is authenticated by the protocol's own definition, and no switch can tell it from the
// terminal's request (docs/security-unauthenticated.md). The test counts these and does not send
// them; everything the MAC can detect is sent.
func (m *mutator) undetectable(orig []byte, w wire) bool {
	if w.badLen || len(m.tak()) == 0 {
		return false
	}
	f, err := pos.Decode(w.b[2:])
	if err != nil || !f.Has(64) {
		return false
	}
	o, err := pos.Decode(orig)
	if err == nil && bytes.Equal(o.MAB(), f.MAB()) && bytes.Equal(o.MAC(), f.MAC()) {
		return false // the authenticated bytes are the terminal's own (TPDU or header changed)
	}
	for _, p := range m.past {
		if po, err := pos.Decode(p); err == nil && bytes.Equal(po.MAB(), f.MAB()) && bytes.Equal(po.MAC(), f.MAC()) {
			return false // an exact replay (of the authenticated bytes) of an earlier frame
		}
	}
	ok, err := keys.VerifyMAC(m.tak(), f.MAB(), f.MAC())
	return err == nil && ok
}

// mutate returns the wire bytes (LEN included) of a damaged copy of frame, and whether its LEN
// lies.
func (m *mutator) mutate(frame []byte) wire {
	b := append([]byte(nil), frame...)
	switch m.rng.IntN(6) {
	case 0, 1: // bit flips
		for range 1 + m.rng.IntN(3) {
			i := m.rng.IntN(len(b))
			b[i] ^= 1 << m.rng.IntN(8)
		}
	case 2: // truncation
		b = b[:m.rng.IntN(len(b))]
	case 3: // extension
		extra := make([]byte, 1+m.rng.IntN(16))
		for i := range extra {
			extra[i] = byte(m.rng.UintN(256))
		}
		b = append(b, extra...)
	case 4: // a LEN that disagrees with the bytes (or is out of range)
		out := pos.WithLen(b)
		n := len(b) + m.rng.IntN(41) - 20
		if m.rng.IntN(4) == 0 {
			n = m.rng.IntN(65536)
		}
		if n == len(b) {
			n++
		}
		binary.BigEndian.PutUint16(out, uint16(n))
		return wire{out, true}
	case 5: // a damaged (or exact) replay of an earlier frame
		if len(m.past) > 0 {
			b = append([]byte(nil), m.past[m.rng.IntN(len(m.past))]...)
			if m.rng.IntN(2) == 0 {
				i := m.rng.IntN(len(b))
				b[i] ^= 1 << m.rng.IntN(8)
			}
		}
	}
	return wire{pos.WithLen(b), false}
}

type wire struct {
	b      []byte
	badLen bool
}

// send writes one damaged frame and reads what comes back: an answer, a closed connection, or
// nothing (a LEN that promises more bytes: the attacker gives up and hangs up).
func (m *mutator) send(w wire) {
	if m.conn == nil {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(attackerAddr)}, Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", m.addr)
		require.NoError(m.t, err)
		m.conn = c
	}
	m.sent++
	wait := 5 * time.Second
	if w.badLen {
		wait = 50 * time.Millisecond
	}
	_ = m.conn.SetDeadline(time.Now().Add(wait))
	if _, err := m.conn.Write(w.b); err == nil {
		if raw, err := pos.ReadFrame(m.conn); err == nil {
			m.answered++
			if f, err := pos.Decode(raw); err == nil {
				c, _ := f.Msg.GetString(39)
				m.codes[c]++
				if os.Getenv("SHOUDAN_MUTATION_DEBUG") != "" && c != "A0" && c != "30" {
					m.t.Logf("damaged frame answered %s: % x", c, w.b)
				}
			}
			if !w.badLen {
				return
			}
		}
	}
	m.closed++
	m.conn.Close()
	m.conn = nil
}

// TestMutationAtTheSocket: while a genuine terminal transacts (purchases, status queries, voids,
// reversals, echoes, sign-ons), damaged copies of each of its frames reach the switch first from
// another address. The genuine terminal gets every answer right, its batch balances, and the
// switch stays up. SHOUDAN_MUTATION_SEED replays a run, SHOUDAN_MUTATION_ROUNDS makes it longer,
// SHOUDAN_MUTATION_DEBUG=1 logs every damaged frame the switch did not answer 30 or A0.
func TestMutationAtTheSocket(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if v, err := strconv.ParseUint(os.Getenv("SHOUDAN_MUTATION_SEED"), 10, 64); err == nil {
		seed = v
	}
	rounds := 240
	if v, err := strconv.Atoi(os.Getenv("SHOUDAN_MUTATION_ROUNDS")); err == nil {
		rounds = v
	}
	t.Logf("seed %d (SHOUDAN_MUTATION_SEED=%d replays this run), %d rounds", seed, seed, rounds)
	s := switchtest.Start(t, switchtest.Options{})
	m := &mutator{t: t, addr: s.Addr(terminals.Production), rng: rand.New(rand.NewPCG(seed, 18)), codes: map[string]int{}}
	t.Cleanup(func() {
		if m.conn != nil {
			m.conn.Close()
		}
	})
	d := s.SignedOn("10000001")
	m.tak = func() []byte { return d.Keys.TAK } // read inside d's RoundTrip, on its goroutine
	d.BeforeSend = func(frame []byte) { m.attack(frame, 3) }

	var debit, credit int64 // the current batch, as the terminal counts it
	var ndebit, ncredit int
	var purchases []*device.Result // approved, not voided or reversed, this batch
	var lastRRN string             // the last financial transaction's RRN
	fail := func(what string, r *device.Result, err error, want string) {
		t.Helper()
		require.NoError(t, err, "%s: the genuine terminal's answer (seed %d)", what, seed)
		require.Equal(t, want, r.Code(), "%s (seed %d)", what, seed)
	}
	for i := range rounds {
		switch {
		case i%60 == 59: // sign on again: a new batch (settle the old one first)
			r, err := d.Settle(pos.Totals{DebitAmount: debit, DebitCount: ndebit, CreditAmount: credit, CreditCount: ncredit})
			fail("settlement", r, err, rc.Approved)
			s48, err := pos.ParseSettlement48(r.Resp.Totals)
			require.NoError(t, err)
			require.Equal(t, byte('1'), s48.Domestic.Reconcile, "the batch balances: %+v (seed %d)", s48.Domestic, seed)
			r, err = d.SignOn()
			fail("sign-on", r, err, rc.Approved)
			debit, credit, ndebit, ncredit, purchases = 0, 0, 0, 0, nil
		case i%10 == 5 && lastRRN != "":
			r, err := d.Status("", "")
			fail("status query", r, err, rc.Approved)
			require.Equal(t, lastRRN, r.Resp.RRN, "the status query names the genuine last transaction (seed %d)", seed)
		case i%20 == 7 && len(purchases) > 0:
			p := purchases[len(purchases)-1]
			r, err := d.Void(good, p)
			fail("void", r, err, rc.Approved)
			purchases = purchases[:len(purchases)-1]
			amt := p.Sent.(*pos.PurchaseRequest).Amount
			debit, ndebit, credit, ncredit = debit-amt, ndebit-1, credit+amt, ncredit+1
			lastRRN = r.Resp.RRN
		case i%20 == 13 && len(purchases) > 0:
			p := purchases[len(purchases)-1]
			r, err := d.Reversal(p, "98")
			fail("reversal", r, err, rc.Approved)
			purchases = purchases[:len(purchases)-1]
			debit, ndebit = debit-p.Sent.(*pos.PurchaseRequest).Amount, ndebit-1
		case i%20 == 17:
			r, err := d.Echo()
			fail("echo", r, err, rc.Approved)
		default:
			amt := int64(100 + i)
			r, err := d.Purchase(good, amt)
			fail("purchase", r, err, rc.Approved)
			require.True(t, r.MACValid, "the approval's MAC verifies (seed %d)", seed)
			purchases = append(purchases, r)
			debit, ndebit, lastRRN = debit+amt, ndebit+1, r.Resp.RRN
		}
	}
	d.BeforeSend = nil
	r, err := d.Settle(pos.Totals{DebitAmount: debit, DebitCount: ndebit, CreditAmount: credit, CreditCount: ncredit})
	fail("settlement", r, err, rc.Approved)
	s48, err := pos.ParseSettlement48(r.Resp.Totals)
	require.NoError(t, err)
	require.Equal(t, byte('1'), s48.Domestic.Reconcile, "the batch balances: %+v (seed %d)", s48.Domestic, seed)
	// another terminal is still served
	r, err = s.SignedOn("10000007").Purchase(good, 100)
	fail("another terminal", r, err, rc.Approved)

	t.Logf("damaged frames: %d sent, %d answered, %d connections closed; codes answered %v; %d not sent (the MAC cannot detect them)",
		m.sent, m.answered, m.closed, m.codes, m.collisions)
	assert.Positive(t, m.codes[rc.MACFailed], "some damaged frames decoded and failed the MAC")
	assert.Positive(t, m.codes[rc.FormatError], "some were answered 30")
	assert.Positive(t, m.closed, "some closed the connection")
	var rs []*journal.Reject
	require.Eventually(t, func() bool {
		rs, err = s.Journal.Rejects(t.Context(), journal.RejectFilter{Source: attackerAddr + ":", Limit: 10})
		return err == nil && len(rs) > 0
	}, 5*time.Second, 20*time.Millisecond, "the damaged frames are in the rejects")
}
