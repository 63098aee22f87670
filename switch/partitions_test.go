package posswitch_test

import (
	"compress/gzip"
	"context"
	"encoding/csv"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/shoudan/shoudan/issuerlink/sim"
	rc "github.com/shoudan/shoudan/responsecodes"
	"github.com/shoudan/shoudan/spec/pos"
	posswitch "github.com/shoudan/shoudan/switch"
	"github.com/shoudan/shoudan/switch/journal"
	"github.com/shoudan/shoudan/switch/switchtest"
	"github.com/shoudan/shoudan/terminals"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// at sets the switch's business clock to a fixed offset from now.
func at(s *switchtest.Switch, offset time.Duration) {
	s.Switch.Now = func() time.Time { return time.Now().Add(offset) }
}

// midnight is the start of today, local time.
func midnight() time.Time {
	y, m, d := time.Now().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.Local)
}

// TestRefundOfYearOldOriginal: a purchase 364 days ago lives in its own day's partition; a
// refund today finds it by MID + RRN + 61.3 (which names that one partition), and the
// original's refunded amount is updated in that partition.
func TestRefundOfYearOldOriginal(t *testing.T) {
	s := switchtest.Start(t, switchtest.Options{})
	d := s.SignedOn("10000001")
	at(s, -364*24*time.Hour)
	old, err := d.Purchase(good, 5000)
	require.Equal(t, rc.Approved, code(t, old, err))
	at(s, 0)
	r, err := d.Refund(good, old.Resp.RRN, time.Now().AddDate(0, 0, -364).Format("0102"), 1200)
	require.Equal(t, rc.Approved, code(t, r, err))
	yearAgo := time.Now().AddDate(0, 0, -364)
	orig, err := s.Journal.ByRRNBetween(t.Context(), old.Resp.RRN, yearAgo, yearAgo)
	require.NoError(t, err)
	require.NotNil(t, orig)
	assert.Equal(t, int64(1200), orig.Refunded)
	assert.Equal(t, journal.PartitionName(time.Now().AddDate(0, 0, -364)), journal.PartitionOf(orig.ID), "the original's id names its day's partition")
	refund := lastRow(t, s, "898310058120001", "10000001")
	assert.Equal(t, journal.PartitionName(time.Now()), journal.PartitionOf(refund.ID))
	require.NotNil(t, refund.OrigID)
	assert.Equal(t, orig.ID, *refund.OrigID)
}

// TestDuplicateAcrossMidnight: a request journaled at 23:59:58 and retransmitted (the same
// bytes) at 00:00:03 gets the answer it missed, byte for byte, and is not sent upstream
// again; a different request under the same key after midnight is a new day's request.
func TestDuplicateAcrossMidnight(t *testing.T) {
	s := switchtest.Start(t, switchtest.Options{})
	d := s.SignedOn("10000001")
	base := time.Until(midnight())
	at(s, base-2*time.Second)
	p, err := d.Purchase(good, 888)
	require.Equal(t, rc.Approved, code(t, p, err))
	before := s.Sim.Received()["0200"]

	at(s, base+3*time.Second)
	again, err := d.RoundTrip(p.Request)
	require.NoError(t, err)
	assert.Equal(t, p.Raw, again.Raw, "the stored answer, byte for byte")
	assert.Equal(t, before, s.Sim.Received()["0200"], "not sent upstream again")

	// a different request under yesterday's key is a request of the new day (rule 13 is "today")
	at(s, base+10*time.Second)
	req := *p.Sent.(*pos.PurchaseRequest)
	req.Amount = 1001
	r, err := d.Exchange(pos.Purchase, &req)
	require.Equal(t, rc.Approved, code(t, r, err))
	assert.NotEqual(t, p.Resp.RRN, r.Resp.RRN)
	// and within the new day the key is now taken
	req.Amount = 1002
	r, err = d.Exchange(pos.Purchase, &req)
	require.Equal(t, rc.Duplicate, code(t, r, err))
}

// TestReversalAcrossMidnight: a purchase approved at 23:59:59 whose answer the terminal lost
// is reversed after midnight: the reversal (which carries no date) finds it in yesterday's
// partition and the issuer is asked to undo it.
func TestReversalAcrossMidnight(t *testing.T) {
	s := switchtest.Start(t, switchtest.Options{})
	d := s.SignedOn("10000001")
	base := time.Until(midnight())
	held := s.Sim.Issuer.Ledger.Snapshot().Held
	at(s, base-time.Second)
	p, err := d.Purchase(good, 4321)
	require.Equal(t, rc.Approved, code(t, p, err))
	at(s, base+30*time.Second)
	r, err := d.Reversal(p, "98")
	require.Equal(t, rc.Approved, code(t, r, err))
	orig, err := s.Journal.ByRRN(t.Context(), p.Resp.RRN)
	require.NoError(t, err)
	assert.Equal(t, byte(journal.Reversed), orig.State)
	eventually(t, 10*time.Second, "the issuer undid the purchase", func() bool { return s.Sim.Issuer.Ledger.Snapshot().Held == held })
}

// TestRecoveryAcrossPartitionBoundary: a purchase written ahead at 23:59:59 is still at the
// issuer when the day turns and later purchases land in the new day's partition. A node
// starting on the journal (recovery from the recorded floor, which lies in yesterday's
// partition) finds it, closes it as timed out and its reversal reaches the issuer.
func TestRecoveryAcrossPartitionBoundary(t *testing.T) {
	s := switchtest.Start(t, switchtest.Options{IssuerTimeout: 10 * time.Second})
	stuck, busy := s.SignedOn("10000001"), s.SignedOn(terminals.LoadTID(0))
	base := time.Until(midnight())
	at(s, base-time.Second)
	s.Sim.SetFaults(sim.Faults{SwallowNext: 1})
	go func() { _, _ = stuck.Purchase(good, 4200) }()
	eventually(t, 5*time.Second, "the purchase is at the issuer", func() bool { return s.Sim.Received()["0200"] > 0 })
	at(s, base+5*time.Second)
	for range 3 {
		p, err := busy.Purchase(good, 100)
		require.Equal(t, rc.Approved, code(t, p, err))
	}
	ctx := t.Context()
	var pendingID int64
	require.NoError(t, s.Journal.Pool.QueryRow(ctx, "SELECT id FROM txn WHERE tid='10000001' AND kind='purchase' AND state='P'").Scan(&pendingID))
	require.Equal(t, journal.PartitionName(time.Now().Add(base-time.Second)), journal.PartitionOf(pendingID))
	eventually(t, 10*time.Second, "the floor is recorded below the pending row", func() bool {
		f, err := s.Journal.RecoveryFloor(ctx)
		return err == nil && f > 0 && f <= pendingID
	})
	// what a restarted node runs before it serves
	sw := &posswitch.Switch{Journal: s.Journal, Link: s.Link, Registry: s.Registry, Log: s.Log, Now: time.Now}
	n, err := sw.Recover(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, n, "one transaction left in flight")
	var state string
	require.NoError(t, s.Journal.Pool.QueryRow(ctx, "SELECT state FROM txn WHERE id=$1", pendingID).Scan(&state))
	assert.Equal(t, "T", state)
	eventually(t, 20*time.Second, "its reversal is delivered", func() bool {
		var acked bool
		_ = s.Journal.Pool.QueryRow(ctx, "SELECT acked_at IS NOT NULL FROM saf WHERE txn_id=$1", pendingID).Scan(&acked)
		return acked
	})
}

// TestRetentionArchivesAndRestores: a partition older than the retention window is detached,
// written to a gzip'd CSV that any tool reads, and dropped; restore brings it back and the
// transaction is found again (and a refund of it would be).
func TestRetentionArchivesAndRestores(t *testing.T) {
	s := switchtest.Start(t, switchtest.Options{})
	d := s.SignedOn("10000001")
	at(s, -401*24*time.Hour)
	old, err := d.Purchase(good, 6000)
	require.Equal(t, rc.Approved, code(t, old, err))
	at(s, -300*24*time.Hour)
	kept, err := d.Purchase(good, 7000)
	require.Equal(t, rc.Approved, code(t, kept, err))
	at(s, 0)
	ctx := t.Context()
	oldDay, keptDay := time.Now().AddDate(0, 0, -401), time.Now().AddDate(0, 0, -300)
	oldRow, err := s.Journal.ByRRNBetween(ctx, old.Resp.RRN, oldDay, oldDay)
	require.NoError(t, err)
	oldRoute, err := s.Journal.Route(ctx, oldRow)
	require.NoError(t, err)
	require.NotNil(t, oldRoute)

	dir := filepath.Join(s.Config.DataDir, "archive")
	files, err := s.Journal.ApplyRetention(ctx, time.Now(), 400, dir)
	require.NoError(t, err)
	require.Len(t, files, 1)
	assert.Equal(t, filepath.Join(dir, "txn_"+oldDay.Format("2006-01-02")+".csv.gz"), files[0])
	gone, err := s.Journal.ByRRNBetween(ctx, old.Resp.RRN, oldDay, oldDay)
	require.NoError(t, err)
	assert.Nil(t, gone, "detached")
	still, err := s.Journal.ByRRNBetween(ctx, kept.Resp.RRN, keptDay, keptDay)
	require.NoError(t, err)
	assert.NotNil(t, still, "inside the window: kept")
	parts, err := s.Journal.Partitions(ctx)
	require.NoError(t, err)
	assert.False(t, slices.ContainsFunc(parts, func(p journal.Partition) bool { return p.Name == journal.PartitionName(oldDay) }))

	// the archive is plain gzip + CSV with a header
	f, err := os.Open(files[0])
	require.NoError(t, err)
	zr, err := gzip.NewReader(f)
	require.NoError(t, err)
	recs, err := csv.NewReader(zr).ReadAll()
	f.Close()
	require.NoError(t, err)
	require.Len(t, recs, 2, "header and one transaction")
	col := slices.Index(recs[0], "rrn")
	require.GreaterOrEqual(t, col, 0)
	assert.Equal(t, old.Resp.RRN, recs[1][col])
	assert.NotContains(t, recs[0], "pan", "no clear PAN column")
	route := slices.Index(recs[0], "via_route")
	require.GreaterOrEqual(t, route, 0, "the issuer route in words")
	assert.Equal(t, "default", recs[1][route])
	// restored into a journal that has other ids for its routes (another database)
	_, err = s.Journal.Pool.Exec(ctx, "DELETE FROM issuer_via; INSERT INTO issuer_via (route, endpoint, secondary) VALUES ('elsewhere', '', false)")
	require.NoError(t, err)

	day, n, err := s.Journal.Restore(ctx, files[0], 7)
	require.NoError(t, err)
	assert.Equal(t, int64(1), n)
	assert.Equal(t, oldDay.Format("2006-01-02"), day.Format("2006-01-02"))
	back, err := s.Journal.ByRRNBetween(ctx, old.Resp.RRN, oldDay, oldDay)
	require.NoError(t, err)
	require.NotNil(t, back)
	assert.Equal(t, int64(6000), back.Amount)
	assert.NotEqual(t, oldRow.Via, back.Via, "renumbered for this journal")
	r, err := s.Journal.Route(ctx, back)
	require.NoError(t, err)
	assert.Equal(t, oldRoute, r, "the route is restored with the transaction")
	byID, err := s.Journal.ByID(ctx, back.ID)
	require.NoError(t, err)
	assert.NotNil(t, byID, "found by id in its restored partition")
	again, err := s.Journal.ApplyRetention(ctx, time.Now(), 400, dir)
	require.NoError(t, err)
	assert.Empty(t, again, "a restored partition is kept for the days restore asked")
	_, _, err = s.Journal.Restore(ctx, files[0], 7)
	assert.ErrorContains(t, err, "already has a partition")

	// new days keep working after all this
	p, err := d.Purchase(good, 100)
	require.Equal(t, rc.Approved, code(t, p, err))
}

// TestCheckNamesCoverSteps: every acquirer check of the pipeline has a bit in the journal's
// compact trace, and the SQL table lists the same names in the same order.
func TestCheckNamesCoverSteps(t *testing.T) {
	for _, st := range posswitch.Steps {
		assert.Contains(t, journal.CheckNames, st.Rule, "journal.CheckNames needs a bit for %q (append it)", st.Rule)
	}
	s := switchtest.Start(t, switchtest.Options{})
	rows, err := s.Journal.Pool.Query(context.Background(), "SELECT name FROM txn_check_names ORDER BY bit")
	require.NoError(t, err)
	var names []string
	for rows.Next() {
		var n string
		require.NoError(t, rows.Scan(&n))
		names = append(names, n)
	}
	assert.Equal(t, journal.CheckNames, names)
	trace := "frame,terminal,signed-on,mac,device,merchant-trading"
	assert.Equal(t, trace, journal.ChecksTrace(journal.TraceChecks(trace)))
}

// TestRecoveryForgetsStoppedNodesFloors: a node that stopped for good left its floor, the ids of
// its last day; after a recovery (which handled every pending row from the smallest floor on) that
// floor no longer pins the next recovery to those ids, while a running node's floor is kept and a
// pending row below a live floor is still found.
func TestRecoveryForgetsStoppedNodesFloors(t *testing.T) {
	s := switchtest.Start(t, switchtest.Options{})
	d := s.SignedOn("10000001")
	p, err := d.Purchase(good, 100)
	require.Equal(t, rc.Approved, code(t, p, err))
	ctx := t.Context()
	_, err = s.Journal.Pool.Exec(ctx, `INSERT INTO journal_floor (node, floor, at) VALUES ('gone:/old', 1, now() - interval '3 days'), ('alive:/x', 2, now())`)
	require.NoError(t, err)
	f, err := s.Journal.RecoveryFloor(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(1), f, "the stopped node's floor pins recovery to id 1: a scan of every day")
	sw := &posswitch.Switch{Journal: s.Journal, Link: s.Link, Registry: s.Registry, Log: s.Log, Now: time.Now}
	_, err = sw.Recover(ctx)
	require.NoError(t, err)
	var nodes []string
	rows, err := s.Journal.Pool.Query(ctx, "SELECT node FROM journal_floor ORDER BY node")
	require.NoError(t, err)
	for rows.Next() {
		var n string
		require.NoError(t, rows.Scan(&n))
		nodes = append(nodes, n)
	}
	require.NotContains(t, nodes, "gone:/old")
	require.Contains(t, nodes, "alive:/x", "a node that wrote its floor just now is running: kept")
	f, err = s.Journal.RecoveryFloor(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(2), f)
}
