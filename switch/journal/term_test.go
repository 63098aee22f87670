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

// TestDupKeyIsTheSQLOne: the Go and SQL forms of the duplicate key agree, digits or not.
func TestDupKeyIsTheSQLOne(t *testing.T) {
	j := openJournal(t)
	for _, c := range [][3]string{
		{"000001", "000001", "0200"}, {"999999", "999999", "0400"}, {"123456", "654321", "0220"},
		{"12345", "000001", "0200"}, {"000001", "00001A", "0200"}, {"", "000001", "0200"}, {"000001", "000001", "200"},
		{"000001", "000001", "02000"}, {"00000１", "000001", "0200"},
	} {
		k, ok := journal.DupKey(c[0], c[1], c[2])
		var sql *int64
		require.NoError(t, j.Pool.QueryRow(t.Context(), "SELECT txn_dkey($1, $2, $3)", c[0], c[1], c[2]).Scan(&sql))
		if ok {
			require.NotNil(t, sql, "%q: Go has %d, SQL none", c, k)
			assert.Equal(t, k, *sql, "%q", c)
		} else {
			assert.Nil(t, sql, "%q: Go has none", c)
		}
	}
	k, _ := journal.DupKey("123456", "654321", "0220")
	assert.Equal(t, int64(1234566543210220), k)
}

// TestDuplicateKeyByNumbers: the duplicate key holds through the terminal's number and dkey,
// also for a request whose batch or STAN is not all digits (the text key), for many terminals
// at once and across two days; a second terminal with the same batch and STAN is not a
// duplicate; every lookup by key, batch and terminal finds its row.
func TestDuplicateKeyByNumbers(t *testing.T) {
	j := openJournal(t)
	ctx := t.Context()
	today := time.Now()
	mk := func(tid, batch, stan string, day time.Time) *journal.Txn {
		return &journal.Txn{LocalDay: day, SettleDate: day, Env: "production", MID: "898310058120001", TID: tid,
			Batch: batch, STAN: stan, MTI: "0200", Kind: "purchase", Amount: 100, State: journal.Approved, RespCode: "00",
			ReqHash: []byte{1}, Rule: journal.PassedRule, Reason: journal.PassedReason}
	}
	var wg sync.WaitGroup
	for term := range 8 {
		wg.Go(func() {
			for n := range 20 {
				ok, err := j.Insert(ctx, mk(fmt.Sprintf("K%07d", term), "000007", fmt.Sprintf("%06d", n+1), today))
				assert.NoError(t, err)
				assert.True(t, ok)
			}
		})
	}
	wg.Wait()
	for _, c := range []struct {
		tid, batch, stan string
		day              time.Time
		want             bool
		why              string
	}{
		{"K0000003", "000007", "000005", today, false, "the same key again"},
		{"K0000003", "000007", "000005", today.AddDate(0, 0, -1), true, "the same key the day before"},
		{"K0000009", "000007", "000005", today, true, "another terminal, same batch and STAN"},
		{"K0000003", "000008", "000005", today, true, "another batch"},
		{"K0000003", "00007", "000005", today, true, "a batch of five digits (no dkey)"},
		{"K0000003", "00007", "000005", today, false, "that one again: its text key holds"},
		{"K0000003", "000007", "00005A", today, true, "a STAN with a letter"},
		{"K0000003", "000007", "00005A", today, false, "that one again"},
	} {
		ok, err := j.Insert(ctx, mk(c.tid, c.batch, c.stan, c.day))
		require.NoError(t, err, c.why)
		assert.Equal(t, c.want, ok, c.why)
		got, err := j.ByKey(ctx, c.day, "898310058120001", c.tid, c.batch, c.stan, "0200")
		require.NoError(t, err, c.why)
		if assert.NotNil(t, got, "%s: found by key", c.why) {
			assert.Equal(t, c.stan, got.STAN)
			assert.Equal(t, c.batch, got.Batch)
			assert.Equal(t, c.tid, got.TID)
		}
	}
	tot, err := j.Totals(ctx, "898310058120001", "K0000003", "000007")
	require.NoError(t, err)
	assert.Equal(t, 21, tot.DebitCount, "batch 000007 of K0000003: 20 today, one the day before, one with a lettered STAN")
	tot, err = j.Totals(ctx, "898310058120001", "K0000003", "00007")
	require.NoError(t, err)
	assert.Equal(t, 1, tot.DebitCount, "the five-digit batch")
	last, err := j.LastAsOf(ctx, today, "898310058120001", "K0000003", "", "")
	require.NoError(t, err)
	require.NotNil(t, last)
	assert.Equal(t, "00005A", last.STAN, "the terminal's last transaction")
	byStan, err := j.LastAsOf(ctx, today, "898310058120001", "K0000003", "000007", "000004")
	require.NoError(t, err)
	require.NotNil(t, byStan)
	assert.Equal(t, "000004", byStan.STAN)
	none, err := j.LastAsOf(ctx, today, "898310058120001", "NEVERSEEN", "", "")
	require.NoError(t, err)
	assert.Nil(t, none, "a terminal that never journaled")
	list, err := j.List(ctx, journal.Filter{MID: "898310058120001", TID: "K0000009"})
	require.NoError(t, err)
	assert.Len(t, list, 1)
}
