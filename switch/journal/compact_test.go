package journal_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/shoudan/shoudan/switch/journal"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCompactClosedDay: a closed day whose rows came from many terminals at once (half-full index
// pages) is compacted by the upkeep: smaller afterwards, every index valid (a half-built one left
// by an interrupted rebuild is gone), its rows still found by key, by terminal and by id;
// yesterday is left alone, and a day done is not done again.
func TestCompactClosedDay(t *testing.T) {
	j := openJournal(t)
	ctx := t.Context()
	closed := time.Now().AddDate(0, 0, -journal.CompactAfterDays-1)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var last *journal.Txn
	for term := range 64 {
		wg.Go(func() {
			for n := range 80 {
				rec := &journal.Txn{LocalDay: closed, SettleDate: closed, Env: "production", MID: "898310058120001", TID: fmt.Sprintf("T%07d", term),
					Batch: "000001", STAN: fmt.Sprintf("%06d", n+1), MTI: "0200", Kind: "purchase", Amount: 100, State: journal.Declined,
					ReqHash: []byte{1}, Trace: "frame", RRN: fmt.Sprintf("%02d%010d", term, n)}
				ok, err := j.Insert(ctx, rec)
				if !assert.NoError(t, err) || !assert.True(t, ok) {
					return
				}
				if term == 7 {
					mu.Lock()
					last = rec
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	require.NotNil(t, last)
	yesterday := insertOn(t, j, 1, "000001", "990000000001")
	// what a REINDEX CONCURRENTLY cut off by a crash leaves: an invalid index
	_, err := j.Pool.Exec(ctx, "CREATE UNIQUE INDEX CONCURRENTLY "+journal.PartitionName(closed)+"_ccnew ON "+journal.PartitionName(closed)+" (mid)")
	require.Error(t, err, "duplicates: the build fails and leaves its index invalid")

	first, err := journal.CompactDay(ctx, j.Pool, closed)
	require.NoError(t, err)
	assert.Less(t, first.After, first.Before, "compaction made the day smaller")
	t.Logf("%s: %d bytes before, %d after", closed.Format("2006-01-02"), first.Before, first.After)
	// as if that had been by hand while the day was open: the upkeep does it again once closed
	_, err = j.Pool.Exec(ctx, "UPDATE txn_compacted SET at = day::timestamptz + interval '1 hour'")
	require.NoError(t, err)
	c, err := j.CompactClosed(ctx, time.Now())
	require.NoError(t, err)
	require.NotNil(t, c, "a closed day was due")
	assert.Equal(t, closed.Format("2006-01-02"), c.Day.Format("2006-01-02"))

	var invalid, ccnew int
	require.NoError(t, j.Pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE NOT indisvalid), count(*) FILTER (WHERE indexrelid::regclass::text LIKE '%ccnew%' OR indexrelid::regclass::text LIKE '%ccold%')
		FROM pg_index WHERE indrelid IN (to_regclass($1), to_regclass($2))`, journal.PartitionName(closed), journal.OutcomeName(closed)).Scan(&invalid, &ccnew))
	assert.Zero(t, invalid, "no invalid index left")
	assert.Zero(t, ccnew, "no half-built index left")
	var attached int
	require.NoError(t, j.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
		WHERE c.relname LIKE $1 AND c.relkind = 'i'`, journal.PartitionName(closed)+"%").Scan(&attached))
	assert.Equal(t, 4, attached, "the rebuilt indexes are the partitioned indexes' partitions again")
	var own []string
	require.NoError(t, j.Pool.QueryRow(ctx, `SELECT array_agg(c.relname::text ORDER BY c.relname) FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid
		WHERE x.indrelid = to_regclass($1) AND x.indisunique AND x.indisvalid AND NOT EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = x.indexrelid)`,
		journal.PartitionName(closed)).Scan(&own))
	assert.Equal(t, []string{journal.PartitionName(closed) + "_key", journal.PartitionName(closed) + "_oddkey"}, own, "the day's own duplicate keys, rebuilt under their names")

	got, err := j.ByKey(ctx, closed, last.MID, last.TID, last.Batch, last.STAN, last.MTI)
	require.NoError(t, err)
	require.NotNil(t, got)
	assert.Equal(t, last.ID, got.ID)
	byTerm, err := j.LastAsOf(ctx, closed, last.MID, last.TID, "", "")
	require.NoError(t, err)
	require.NotNil(t, byTerm)
	assert.Equal(t, last.ID, byTerm.ID, "the terminal's last transaction of the day")
	byID, err := j.ByID(ctx, last.ID)
	require.NoError(t, err)
	require.NotNil(t, byID)

	parts, err := j.Partitions(ctx)
	require.NoError(t, err)
	listed := map[string]bool{}
	for _, p := range parts {
		listed[p.Day.Format("2006-01-02")] = !p.Compacted.IsZero()
	}
	assert.True(t, listed[closed.Format("2006-01-02")], "the listing says the day is compacted")
	assert.False(t, listed[yesterday.LocalDay.Format("2006-01-02")], "and yesterday is not")

	again, err := j.CompactClosed(ctx, time.Now())
	require.NoError(t, err)
	assert.Nil(t, again, "done days are not done again; yesterday is still open")
	var n int
	require.NoError(t, j.Pool.QueryRow(ctx, "SELECT count(*) FROM txn_compacted WHERE day = $1", yesterday.LocalDay.Format("2006-01-02")).Scan(&n))
	assert.Zero(t, n, "yesterday is not compacted")
}
