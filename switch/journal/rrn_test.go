package journal_test

import (
	"context"
	"crypto/rand"
	"testing"
	"time"

	"github.com/shoudan/shoudan/switch/journal"
	"github.com/shoudan/shoudan/switch/switchtest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func openJournal(t *testing.T) *journal.Journal {
	t.Helper()
	key := make([]byte, 32)
	rand.Read(key)
	v, err := journal.NewVault(key)
	require.NoError(t, err)
	j, err := journal.Open(context.Background(), switchtest.Database(t), v)
	require.NoError(t, err)
	t.Cleanup(j.Close)
	return j
}

// insertOn journals a declined purchase with this RRN on the local day daysAgo days before today.
func insertOn(t *testing.T, j *journal.Journal, daysAgo int, stan, rrn string) *journal.Txn {
	t.Helper()
	d := time.Now().AddDate(0, 0, -daysAgo)
	rec := &journal.Txn{LocalDay: d, SettleDate: d, Env: "production", MID: "M1", TID: "T1", Batch: "000001", STAN: stan, MTI: "0200",
		Kind: "purchase", Amount: 100, State: journal.Declined, ReqHash: []byte{1}, Trace: "frame", RRN: rrn}
	ok, err := j.Insert(t.Context(), rec)
	require.NoError(t, err)
	require.True(t, ok)
	return rec
}

// TestByRRNIsBounded: an RRN carries no date, so ByRRN looks at today and the RRNLookback days
// before, newest first, and no further; older days are found by naming them (ByRRNBetween).
func TestByRRNIsBounded(t *testing.T) {
	j := openJournal(t)
	ctx := t.Context()
	old := insertOn(t, j, journal.RRNLookback+9, "000001", "000000777001")
	insertOn(t, j, 3, "000002", "000000777002")
	recent := insertOn(t, j, 1, "000003", "000000777002") // the same RRN again (another node's block, or a restored day)

	got, err := j.ByRRN(ctx, "000000777002")
	require.NoError(t, err)
	require.NotNil(t, got)
	assert.Equal(t, recent.ID, got.ID, "the newest day first")

	got, err = j.ByRRN(ctx, "000000777001")
	require.NoError(t, err)
	assert.Nil(t, got, "beyond the lookback: not searched")

	day := old.LocalDay
	got, err = j.ByRRNBetween(ctx, "000000777001", day.AddDate(0, 0, -2), day.AddDate(0, 0, 2))
	require.NoError(t, err)
	require.NotNil(t, got)
	assert.Equal(t, old.ID, got.ID)
	got, err = j.ByRRNBetween(ctx, "000000777001", day.AddDate(0, 0, 1), day.AddDate(0, 0, 5))
	require.NoError(t, err)
	assert.Nil(t, got, "only the days asked for")
}
