package journal_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/shoudan/shoudan/switch/journal"
	"github.com/shoudan/shoudan/switch/switchtest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) { switchtest.Main(m) }

// TestUpgradeKeepsData: a journal written by the schema before issue 13 (one unpartitioned txn
// table, jsonb responses, names of checks, 32-byte hashes) is moved into daily partitions on
// upgrade: every row is kept under an id that names its day, references (orig_id, saf.txn_id)
// follow, the checks and the balance survive, the old sealed reversal can still be armed, and
// the issuer route of a transaction (txn_route, issue 12) is kept on the transaction itself.
func TestUpgradeKeepsData(t *testing.T) {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, switchtest.Database(t))
	require.NoError(t, err)
	defer pool.Close()
	require.NoError(t, journal.MigrateTo(ctx, pool, "0015_merchant_day"))
	hash := make([]byte, 32)
	for i := range hash {
		hash[i] = byte(i)
	}
	_, err = pool.Exec(ctx, `INSERT INTO txn (local_day, settle_date, env, mid, tid, batch, stan, mti, kind, amount, state, req_hash, pan_hash, rrn, trace, response, reversal)
		VALUES ('2026-03-04', '2026-03-04', 'production', 'M1', 'T1', '000001', '000007', '0200', 'purchase', 500, 'A', $1, $1, '000000001000',
			'frame,terminal,signed-on,mac', '{"RespCode":"00","Balance":"1002156C000000012345"}', '\x01'),
		('2026-03-05', '2026-03-05', 'production', 'M1', 'T1', '000001', '000008', '0220', 'refund', 100, 'A', $1, $1, '000000001001', '', NULL, NULL)`, hash)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `UPDATE txn SET orig_id = (SELECT id FROM txn WHERE stan='000007') WHERE stan='000008'`)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `INSERT INTO saf (txn_id, payload) SELECT id, reversal FROM txn WHERE stan='000007'`)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `INSERT INTO journal_floor (node, floor) VALUES ('old', 1)`)
	require.NoError(t, err)
	// the route the purchase took, in the table of issue 12 (one row per transaction)
	_, err = pool.Exec(ctx, `INSERT INTO txn_route (txn_id, route, endpoint, secondary) SELECT id, 'bank-b', '10.1.0.2:7000', true FROM txn WHERE stan='000007'`)
	require.NoError(t, err)

	require.NoError(t, journal.Migrate(ctx, pool))

	vault, err := journal.NewVault(make([]byte, 32))
	require.NoError(t, err)
	j, err := journal.Open(ctx, pool.Config().ConnString(), vault)
	require.NoError(t, err)
	defer j.Close()
	march4, march5 := time.Date(2026, 3, 4, 0, 0, 0, 0, time.Local), time.Date(2026, 3, 5, 0, 0, 0, 0, time.Local)
	p, err := j.ByRRNBetween(ctx, "000000001000", march4, march5)
	require.NoError(t, err)
	require.NotNil(t, p)
	assert.Equal(t, "2026-03-04", journal.DayOf(p.ID).Format("2006-01-02"), "the id names the day")
	assert.Equal(t, "txn_p20260304", journal.PartitionOf(p.ID))
	assert.Equal(t, "frame,terminal,signed-on,mac", p.Trace)
	assert.Equal(t, "1002156C000000012345", p.Balance)
	assert.Equal(t, hash[:16], p.PANHash, "hashes cut to their first 16 bytes")
	byID, err := j.ByID(ctx, p.ID)
	require.NoError(t, err)
	require.NotNil(t, byID)
	route, err := j.RouteOf(ctx, p.ID)
	require.NoError(t, err)
	assert.Equal(t, &journal.Route{Route: "bank-b", Endpoint: "10.1.0.2:7000", Secondary: true}, route, "the route moved onto the transaction")
	var routeTable bool
	require.NoError(t, pool.QueryRow(ctx, "SELECT to_regclass('txn_route') IS NOT NULL").Scan(&routeTable))
	assert.False(t, routeTable, "no table with a row per transaction is left")
	r, err := j.ByRRNBetween(ctx, "000000001001", march4, march5)
	require.NoError(t, err)
	require.NotNil(t, r.OrigID)
	assert.Equal(t, p.ID, *r.OrigID)
	var safTxn int64
	require.NoError(t, pool.QueryRow(ctx, "SELECT txn_id FROM saf").Scan(&safTxn))
	assert.Equal(t, p.ID, safTxn)
	floor, err := j.RecoveryFloor(ctx)
	require.NoError(t, err)
	assert.Zero(t, floor, "old floors are forgotten: the first recovery reads everything")
	// new rows continue the sequence in today's partition, above every migrated id
	today := time.Now()
	rec := &journal.Txn{LocalDay: today, SettleDate: today, Env: "production", MID: "M1", TID: "T1", Batch: "000002", STAN: "000001", MTI: "0200",
		Kind: "purchase", Amount: 1, State: journal.Declined, ReqHash: []byte{1}, Trace: "frame"}
	ok, err := j.Insert(ctx, rec)
	require.NoError(t, err)
	require.True(t, ok)
	assert.Greater(t, rec.ID, p.ID)
	assert.Equal(t, journal.PartitionName(today), journal.PartitionOf(rec.ID))
}
