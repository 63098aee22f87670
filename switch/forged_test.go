package posswitch_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	rc "github.com/shoudan/shoudan/responsecodes"
	"github.com/shoudan/shoudan/spec"
	"github.com/shoudan/shoudan/spec/pos"
	"github.com/shoudan/shoudan/switch/journal"
	"github.com/shoudan/shoudan/switch/switchtest"
	"github.com/shoudan/shoudan/terminals"
	"github.com/shoudan/shoudan/terminals/device"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// attackerAddr is where forged frames come from: another loopback address than the genuine
// terminals' 127.0.0.1, so that a reject's source tells them apart.
const attackerAddr = "127.0.0.2"

// impostor is someone who can reach the terminal port and has read one of d's receipts: it
// claims d's TID and MID, knows (or guesses) d's batch and next STAN, but not its keys. It
// dials from attackerAddr.
func impostor(t *testing.T, s *switchtest.Switch, d *device.Terminal) *device.Terminal {
	t.Helper()
	e, err := device.Dial(s.Addr(terminals.Production), device.Config{TID: d.TID, MID: d.MID, Serial: d.Serial,
		TMK: []byte("NOT-THE-TMK-1234"), Timeout: 10 * time.Second, LocalAddr: attackerAddr})
	require.NoError(t, err)
	t.Cleanup(func() { e.Close() })
	e.Batch, e.Keys.TAK, e.Keys.TPK = d.Batch, []byte("GUESSKEY"), []byte("GUESSKEYGUESSKEY")
	return e
}

// next makes the impostor's next request use d's next STAN (and d's current batch).
func next(e, d *device.Terminal) *device.Terminal { e.STAN, e.Batch = d.STAN, d.Batch; return e }

// rejectsOf waits until the rejects table holds at least n rejects of tid and returns them.
func rejectsOf(t *testing.T, s *switchtest.Switch, tid string, n int) []*journal.Reject {
	t.Helper()
	var rs []*journal.Reject
	require.Eventually(t, func() bool {
		var err error
		rs, err = s.Journal.Rejects(t.Context(), journal.RejectFilter{TID: tid})
		return err == nil && len(rs) >= n
	}, 5*time.Second, 20*time.Millisecond, "rejects of %s: want %d", tid, n)
	return rs
}

// TestForgedFramesChangeNothing: frames that fail a check up to and including the MAC (§7 rows
// 1-4) are answered but burn no STAN, never become the terminal's last transaction, touch no
// original or total, and are recorded with the rejects, with their reason and source.
func TestForgedFramesChangeNothing(t *testing.T) {
	s := switchtest.Start(t, switchtest.Options{})
	const tid, mid = "10000001", "898310058120001"
	d := s.SignedOn(tid)
	evil := impostor(t, s, d)

	first, err := d.Purchase(good, 1000)
	require.Equal(t, rc.Approved, code(t, first, err))

	// STAN burning: a forged purchase with the terminal's next STAN, then the genuine one
	forged, err := next(evil, d).Purchase(good, 4321)
	require.Equal(t, rc.MACFailed, code(t, forged, err))
	genuine, err := d.Purchase(good, 1200)
	require.Equal(t, rc.Approved, code(t, genuine, err), "the genuine purchase with the STAN the forged frame used is approved, not 94")
	assert.Equal(t, forged.Resp.STAN, genuine.Resp.STAN, "the same STAN")

	// runs of forged frames over the next STANs block nothing
	for range 5 {
		next(evil, d)
		for range 20 {
			r, err := evil.Purchase(good, 4321)
			require.Equal(t, rc.MACFailed, code(t, r, err))
		}
		r, err := d.Purchase(good, 100)
		require.Equal(t, rc.Approved, code(t, r, err))
	}

	// a forged "last transaction": the status query names the genuine one
	last, err := d.Purchase(good, 1500)
	require.Equal(t, rc.Approved, code(t, last, err))
	f, err := next(evil, d).Purchase(good, 4321)
	require.Equal(t, rc.MACFailed, code(t, f, err))
	st, err := d.Status("", "")
	require.Equal(t, rc.Approved, code(t, st, err))
	assert.Equal(t, last.Resp.RRN, st.Resp.RRN, "the genuine last transaction, not the forged one")
	assert.Equal(t, int64(1500), st.Resp.Amount)
	rec, err := pos.ParseStatusRecord(st.Resp.Record)
	require.NoError(t, err)
	assert.Equal(t, pos.StatusRecord{RespCode: "00", MTI: "0200", ProcCode: "000000", Type: "22", EntryMode: "051", State: 'A'}, rec)
	// by batch + STAN, the forged frame's STAN names nothing
	st, err = d.Status(d.Batch, f.Resp.STAN)
	require.Equal(t, rc.NoOriginal, code(t, st, err), "nothing was journaled under the forged frame's STAN")

	// originals: a forged void and a forged reversal of the genuine purchase change nothing
	r, err := next(evil, d).Void(good, last)
	require.Equal(t, rc.MACFailed, code(t, r, err))
	r, err = evil.Reversal(last, "98")
	require.Equal(t, rc.MACFailed, code(t, r, err))
	row, err := s.Journal.ByRRN(t.Context(), last.Resp.RRN)
	require.NoError(t, err)
	assert.Equal(t, byte(journal.Approved), row.State, "the original is untouched")
	v, err := d.Void(good, last)
	require.Equal(t, rc.Approved, code(t, v, err), "the genuine void")

	// the other unauthenticated declines: a wrong batch (77), an unregistered terminal (97)
	next(evil, d).Batch = "000999"
	r, err = evil.Purchase(good, 4321)
	require.Equal(t, rc.SignOnAgain, code(t, r, err))
	stranger := impostor(t, s, d)
	stranger.TID = "99999999"
	r, err = stranger.Purchase(good, 4321)
	require.Equal(t, rc.UnknownTerminal, code(t, r, err))

	// nothing forged is in the journal
	rows, err := s.Journal.List(t.Context(), journal.Filter{TID: tid, MID: mid})
	require.NoError(t, err)
	for _, r := range rows {
		assert.NotEqual(t, int64(4321), r.Amount, "a forged frame was journaled: %+v", r)
		assert.False(t, r.RespCode == rc.MACFailed || r.RespCode == rc.SignOnAgain, "a forged frame was journaled: %+v", r)
	}
	// the batch's totals are the genuine ones: 1000 + 1200 + 5 × 100 + 1500 (voided, so a credit)
	set, err := d.Settle(pos.Totals{DebitAmount: 2700, DebitCount: 7, CreditAmount: 1500, CreditCount: 1})
	require.Equal(t, rc.Approved, code(t, set, err))
	s48, err := pos.ParseSettlement48(set.Resp.Totals)
	require.NoError(t, err)
	assert.Equal(t, byte('1'), s48.Domestic.Reconcile, "balanced: %+v", s48.Domestic)

	// the rejects record holds every forged frame with its reason and source, masked
	const forgedMAC = 1 + 100 + 1 + 2 // purchases, then the void and the reversal
	rs := rejectsOf(t, s, tid, forgedMAC+1)
	byRule := map[string]int{}
	for _, r := range rs {
		byRule[r.Rule+" "+r.Code]++
		assert.True(t, strings.HasPrefix(r.Source, attackerAddr+":"), "source %q", r.Source)
		assert.NotEmpty(t, r.Reason)
		assert.NotContains(t, fmt.Sprintf("%+v", r), goodPAN, "masked data only")
		assert.Equal(t, "production", r.Env)
		if r.Kind == "purchase" {
			assert.Equal(t, spec.MaskPAN(goodPAN), r.PANMasked)
			assert.Equal(t, int64(4321), r.Amount)
			assert.Equal(t, mid, r.MID)
			assert.Len(t, r.FrameHash, 32)
		}
	}
	assert.Equal(t, map[string]int{"mac A0": forgedMAC, "signed-on 77": 1}, byRule)
	unknown := rejectsOf(t, s, "99999999", 1)
	assert.Equal(t, "terminal", unknown[0].Rule)
	assert.Equal(t, rc.UnknownTerminal, unknown[0].Code)
}

// TestRejectsBounded: the rejects table is pruned to its bound as the switch writes, keeping the
// newest; what does not fit the queue is dropped and counted, never waited for.
func TestRejectsBounded(t *testing.T) {
	s := switchtest.Start(t, switchtest.Options{})
	s.Journal.SetRejectLimits(journal.RejectLimits{MaxRows: 50})
	for i := range 300 {
		for !s.Journal.RecordReject(&journal.Reject{Env: "production", Source: "192.0.2.1:4000", TID: "flood", STAN: fmt.Sprintf("%06d", i),
			Code: rc.MACFailed, Rule: "mac", Reason: "test"}) {
			time.Sleep(time.Millisecond) // the queue is full: the writer catches up
		}
	}
	require.Eventually(t, func() bool { return s.Journal.RejectsWritten() == 300 }, 10*time.Second, 20*time.Millisecond)
	require.Eventually(t, func() bool {
		rs, err := s.Journal.Rejects(t.Context(), journal.RejectFilter{TID: "flood"})
		require.NoError(t, err)
		return len(rs) <= 50+50/10 && len(rs) > 0 && rs[0].STAN == "000299"
	}, 10*time.Second, 50*time.Millisecond, "pruned to about 50 rows, the newest kept")
}
