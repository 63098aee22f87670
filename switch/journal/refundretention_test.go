package journal_test

import (
	"compress/gzip"
	"encoding/csv"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRetentionArchivesFinishedRefunds: retention takes the refund tables' finished rows from
// before its cutoff out into gzip'd CSV files (a finished refund with its history, without its
// sealed advice; a batch no refund names; a cleared refund's clearing) and leaves what is
// recent, pending or still named; a second round finds nothing more.
func TestRetentionArchivesFinishedRefunds(t *testing.T) {
	j := openJournal(t)
	ctx := t.Context()
	old, recent := time.Now().AddDate(0, 0, -420), time.Now().AddDate(0, 0, -30)
	exec := func(sql string, args ...any) {
		t.Helper()
		_, err := j.Pool.Exec(ctx, sql, args...)
		require.NoError(t, err)
	}
	exec(`INSERT INTO refund_batch (id, mid, content_hash, uploaded_by, at) VALUES (1, 'M1', '\x01', 'op', $1), (2, 'M1', '\x02', 'op', $1), (3, 'M1', '\x03', 'op', $2)`, old, recent)
	refund := func(id int, batch any, state string, at time.Time) {
		exec(`INSERT INTO bo_refund (id, mid, idem_key, kind, source, batch_id, orig_id, orig_rrn, orig_day, tid, amount, state, applied_by, advice, created_at, updated_at)
			VALUES ($1::bigint, 'M1', 'k' || $1::text, 'refund', 'batch', $2::bigint, 1, '000000000001', $3::date, 'T1', 100, $4, 'op', '\xdeadbeef', $3::timestamptz, $3::timestamptz)`, id, batch, at, state)
		exec(`INSERT INTO bo_refund_event (refund_id, at, state, who) VALUES ($1, $2, 'applied', 'op'), ($1, $2, $3, 'op')`, id, at, state)
	}
	refund(10, 1, "succeeded", old) // goes, and then batch 1 with it
	refund(11, 2, "sent", old)      // not finished: stays, and keeps batch 2
	refund(12, nil, "rejected", old)
	refund(13, 3, "failed", recent)
	exec(`INSERT INTO refund_clearing (txn_id, mid, settle_date, at, rrn, amount, state, cleared_on) VALUES
		(101, 'M1', $1::date, $1::timestamptz, '000000000101', 100, 'cleared', $1::date), (102, 'M1', $1::date, $1::timestamptz, '000000000102', 100, 'pending', NULL),
		(103, 'M1', $2::date, $2::timestamptz, '000000000103', 100, 'cleared', $2::date)`, old, recent)

	dir := t.TempDir()
	files, err := j.ApplyRetention(ctx, time.Now(), 400, dir)
	require.NoError(t, err)
	byTable := map[string][][]string{}
	for _, f := range files {
		table := filepath.Base(f)[:strings.Index(filepath.Base(f), "_until_")]
		fh, err := os.Open(f)
		require.NoError(t, err)
		zr, err := gzip.NewReader(fh)
		require.NoError(t, err)
		recs, err := csv.NewReader(zr).ReadAll()
		fh.Close()
		require.NoError(t, err)
		byTable[table] = recs
	}
	require.Len(t, byTable["bo_refund"], 3, "header and refunds 10 and 12")
	assert.NotContains(t, byTable["bo_refund"][0], "advice", "no sealed advice in an archive")
	assert.Equal(t, []string{"10", "12"}, []string{byTable["bo_refund"][1][0], byTable["bo_refund"][2][0]})
	assert.Len(t, byTable["bo_refund_event"], 5, "header and their four events")
	require.Len(t, byTable["refund_batch"], 2, "header and batch 1")
	assert.Equal(t, "1", byTable["refund_batch"][1][0])
	require.Len(t, byTable["refund_clearing"], 2, "header and clearing 101")
	assert.Equal(t, "101", byTable["refund_clearing"][1][0])

	ids := func(sql string) []int64 {
		rows, err := j.Pool.Query(ctx, sql)
		require.NoError(t, err)
		defer rows.Close()
		var out []int64
		for rows.Next() {
			var id int64
			require.NoError(t, rows.Scan(&id))
			out = append(out, id)
		}
		slices.Sort(out)
		return out
	}
	assert.Equal(t, []int64{11, 13}, ids("SELECT id FROM bo_refund"))
	assert.Equal(t, []int64{11, 11, 13, 13}, ids("SELECT refund_id FROM bo_refund_event"))
	assert.Equal(t, []int64{2, 3}, ids("SELECT id FROM refund_batch"))
	assert.Equal(t, []int64{102, 103}, ids("SELECT txn_id FROM refund_clearing"))

	again, err := j.ApplyRetention(ctx, time.Now(), 400, dir)
	require.NoError(t, err)
	assert.Empty(t, again, "nothing more to archive")
}
