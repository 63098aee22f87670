package posswitch_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	rc "github.com/shoudan/shoudan/responsecodes"
	"github.com/shoudan/shoudan/spec"
	"github.com/shoudan/shoudan/spec/pos"
	posswitch "github.com/shoudan/shoudan/switch"
	"github.com/shoudan/shoudan/switch/journal"
	"github.com/shoudan/shoudan/switch/metrics"
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
			assert.Len(t, r.FrameHash, 16) // 128 bits of HMAC-SHA256 (journal.Vault, issue 13)
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

// TestForgedSignOn: a sign-on carries no MAC, so anyone with a receipt can send one. It no longer
// knocks the terminal off: the terminal keeps its current keys until it proves the new ones; a
// forged sign-off from another address is ignored; sign-ons from other addresses are limited
// and raise alerts; the genuine terminal can always sign on from where it proved its keys.
func TestForgedSignOn(t *testing.T) {
	s := switchtest.Start(t, switchtest.Options{})
	s.Switch.SignOnLimit = posswitch.SignOnLimit{Max: 3, Window: time.Minute}
	const tid = "10000001"
	d := s.SignedOn(tid)
	p, err := d.Purchase(good, 1000) // proves the keys, from 127.0.0.1
	require.Equal(t, rc.Approved, code(t, p, err))
	alerts := func(reason string) float64 {
		return testutil.ToFloat64(metrics.Unauthenticated.WithLabelValues(reason))
	}
	newAddr, rate, ignored := alerts("new_address"), alerts("rate"), alerts("sign-off-ignored")

	// a forged sign-on: approved (the keys in it are useless without the TMK) ...
	evil := impostor(t, s, d)
	r, _ := next(evil, d).SignOn()
	require.Equal(t, rc.Approved, r.Code())
	assert.Equal(t, newAddr+1, alerts("new_address"), "a sign-on from a new address raises an alert")
	// ... and the real terminal's next purchase, with its current keys and batch, is approved
	r, err = d.Purchase(good, 1100)
	require.Equal(t, rc.Approved, code(t, r, err), "the forged sign-on did not replace the terminal's keys")
	st, err := d.Status("", "")
	require.Equal(t, rc.Approved, code(t, st, err))
	assert.Equal(t, r.Resp.RRN, st.Resp.RRN)

	// a forged sign-off from another address changes nothing
	r, err = next(evil, d).SignOff()
	require.Equal(t, rc.Approved, code(t, r, err))
	assert.Equal(t, ignored+1, alerts("sign-off-ignored"))
	r, err = d.Purchase(good, 1200)
	require.Equal(t, rc.Approved, code(t, r, err), "the forged sign-off did not sign the terminal off")

	// sign-ons from other addresses beyond the limit are refused (65) and change nothing
	var codes []string
	for range 4 {
		r, _ := next(evil, d).SignOn()
		codes = append(codes, r.Code())
	}
	// 3 a minute from addresses other than the proven one: the terminal's own first sign-on (when
	// nothing was proven yet), the forged one, one more
	assert.Equal(t, []string{rc.Approved, rc.ExceedsFrequency, rc.ExceedsFrequency, rc.ExceedsFrequency}, codes)
	assert.Equal(t, rate+3, alerts("rate"))
	r, err = d.Purchase(good, 1300)
	require.Equal(t, rc.Approved, code(t, r, err))

	// the genuine terminal signs on from where it proved its keys, whatever the limit: the new
	// keys become current with its first request, and then the old ones are refused
	old := d.State
	r, err = d.SignOn()
	require.Equal(t, rc.Approved, code(t, r, err))
	require.NotEqual(t, old.Batch, d.Batch, "a sign-on opens a new batch")
	r, err = d.Purchase(good, 1400)
	require.Equal(t, rc.Approved, code(t, r, err), "the new keys are proven by the first request MACed with them")
	stale := s.Terminal(tid)
	stale.State, stale.STAN = old, d.STAN+100
	r, err = stale.Purchase(good, 100)
	require.Equal(t, rc.SignOnAgain, code(t, r, err), "once the new keys are proven, the old keys and batch are refused")

	// a genuine sign-off (from the proven address) still signs the terminal off
	r, err = d.SignOff()
	require.Equal(t, rc.Approved, code(t, r, err))
	r, err = d.Purchase(good, 100)
	require.Equal(t, rc.SignOnAgain, code(t, r, err))

	// the rejects record holds the forged sign-off and the refused sign-ons with their source (and
	// the genuine terminal's two 77s above)
	rs := rejectsOf(t, s, tid, 6)
	bySource := map[string]map[string]int{}
	for _, r := range rs {
		ip, _, _ := strings.Cut(r.Source, ":")
		if bySource[ip] == nil {
			bySource[ip] = map[string]int{}
		}
		bySource[ip][r.Rule+" "+r.Code]++
		assert.NotEmpty(t, r.Reason)
	}
	assert.Equal(t, map[string]map[string]int{
		attackerAddr: {"sign-off-ignored 00": 1, "sign-on-limit 65": 3},
		"127.0.0.1":  {"signed-on 77": 2},
	}, bySource)
}

// TestSignOnAnswerLost: a terminal whose sign-on answer was lost keeps working with its old
// keys; one that signs on twice finds the keys of either sign-on accepted.
func TestSignOnAnswerLost(t *testing.T) {
	s := switchtest.Start(t, switchtest.Options{})
	d := s.SignedOn("10000001")
	r, err := d.Purchase(good, 100)
	require.Equal(t, rc.Approved, code(t, r, err))
	before := d.State
	r, err = d.SignOn() // the answer "never arrived": the terminal keeps what it had before
	require.Equal(t, rc.Approved, code(t, r, err))
	first := d.State
	d.State.Keys, d.State.Batch = before.Keys, before.Batch
	r, err = d.Purchase(good, 200)
	require.Equal(t, rc.Approved, code(t, r, err), "the old keys serve until new ones are proven")
	r, err = d.SignOn()
	require.Equal(t, rc.Approved, code(t, r, err))
	d.State.Keys, d.State.Batch = first.Keys, first.Batch // the first of two unproven sign-ons
	r, err = d.Purchase(good, 300)
	require.Equal(t, rc.Approved, code(t, r, err), "the keys of an earlier pending sign-on are accepted")
}

// TestRetransmissionsAnsweredFromTheJournal: a retransmission (same bytes) of a void or refund
// gets the stored answer, although the original it names has changed since (voided, refunded):
// the duplicate check (row 13) comes before the original's checks (rows 14-20).
func TestRetransmissionsAnsweredFromTheJournal(t *testing.T) {
	s := switchtest.Start(t, switchtest.Options{})
	d := s.SignedOn("10000001")
	p, err := d.Purchase(good, 2500)
	require.Equal(t, rc.Approved, code(t, p, err))
	v, err := d.Void(good, p)
	require.Equal(t, rc.Approved, code(t, v, err))
	again, err := d.RoundTrip(v.Request)
	require.Equal(t, rc.Approved, code(t, again, err), "the void's retransmission gets the stored approval, not 12")
	assert.Equal(t, v.Resp.RRN, again.Resp.RRN)

	s.Switch.Now = func() time.Time { return time.Now().AddDate(0, 0, -2) }
	o, err := d.Purchase(good, 3000)
	s.Switch.Now = time.Now
	require.Equal(t, rc.Approved, code(t, o, err))
	rf, err := d.Refund(good, o.Resp.RRN, time.Now().AddDate(0, 0, -2).Format("0102"), 3000)
	require.Equal(t, rc.Approved, code(t, rf, err))
	again, err = d.RoundTrip(rf.Request)
	require.Equal(t, rc.Approved, code(t, again, err), "the refund's retransmission gets the stored approval, not 13")
	assert.Equal(t, rf.Resp.RRN, again.Resp.RRN)
}

// TestBoundTerminal: a terminal bound to source address ranges (config bind) is served from them
// and answered 97 from anywhere else, its sign-ons included; the refusals are rejects.
func TestBoundTerminal(t *testing.T) {
	s := switchtest.Start(t, switchtest.Options{Edit: func(y string) string {
		return y + "bind:\n  - {mid: \"898310058120001\", tid: \"10000001\", from: [\"127.0.0.1/32\", \"192.0.2.0/24\"]}\n"
	}})
	d := s.SignedOn("10000001")
	r, err := d.Purchase(good, 100)
	require.Equal(t, rc.Approved, code(t, r, err), "served from its range")
	evil := impostor(t, s, d)
	r, _ = next(evil, d).SignOn()
	require.Equal(t, rc.UnknownTerminal, r.Code(), "a sign-on from outside the range")
	r, err = next(evil, d).Echo()
	require.Equal(t, rc.UnknownTerminal, code(t, r, err))
	other := impostor(t, s, s.SignedOn("10000007")) // not bound: served from anywhere
	r, err = other.Echo()
	require.Equal(t, rc.Approved, code(t, r, err))
	rs := rejectsOf(t, s, "10000001", 2)
	assert.Equal(t, "terminal", rs[0].Rule)
	assert.Contains(t, rs[0].Reason, "bound to")
}

// TestForgedBatchUpload: a batch upload (0320, no MAC) records 差错 items (batch_mismatch) only
// when it comes from where the terminal proved its keys; a forged one is answered and ignored.
func TestForgedBatchUpload(t *testing.T) {
	s := switchtest.Start(t, switchtest.Options{})
	d := s.SignedOn("10000001")
	p, err := d.Purchase(good, 5000)
	require.Equal(t, rc.Approved, code(t, p, err))
	mismatches := func() int {
		var n int
		require.NoError(t, s.Journal.Pool.QueryRow(t.Context(), "SELECT count(*) FROM batch_mismatch").Scan(&n))
		return n
	}
	phantom := []pos.UploadItem{{CardClass: "00", STAN: p.Resp.STAN, PAN: goodPAN, Amount: 1}, {CardClass: "00", STAN: "777777", PAN: goodPAN, Amount: 1}}
	r, err := next(impostor(t, s, d), d).Upload(phantom, "201")
	require.Equal(t, rc.Approved, code(t, r, err))
	assert.Equal(t, 0, mismatches(), "a forged upload records no 差错 item")
	rs := rejectsOf(t, s, "10000001", 1)
	assert.Equal(t, "batch-upload-unproven", rs[0].Rule)

	r, err = d.Upload(phantom, "201")
	require.Equal(t, rc.Approved, code(t, r, err))
	assert.Equal(t, 2, mismatches(), "the terminal's own upload is reconciled")
}
