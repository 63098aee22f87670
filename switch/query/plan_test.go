package query_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shoudan/shoudan/switch/journal"
	"github.com/shoudan/shoudan/switch/query"
	"github.com/shoudan/shoudan/switch/switchtest"
	"github.com/stretchr/testify/require"
)

// TestListingsUseTheirIndexes: the console's listings of a merchant's and a terminal's
// transactions read a day through the merchant's (hashtext(mid), id) and the terminal's
// (term, id) index (journal migrations 0024, 0027), never the whole day's partition: a reader
// that names only mid or tid as text would not.
func TestListingsUseTheirIndexes(t *testing.T) {
	ctx := t.Context()
	j := switchtest.Journal(t)
	day := time.Now()
	for n := range 3000 {
		mid, tid := fmt.Sprintf("89831005812%04d", n%60), fmt.Sprintf("9%07d", n%120)
		ok, err := j.Insert(ctx, &journal.Txn{LocalDay: day, SettleDate: day, Env: "production", MID: mid, TID: tid, Batch: "000001",
			STAN: fmt.Sprintf("%06d", n+1), MTI: "0200", Kind: "purchase", Amount: 100, State: journal.Declined, RespCode: "51",
			ReqHash: []byte{1}, Rule: "issuer", Reason: "declined"})
		require.NoError(t, err)
		require.True(t, ok)
	}
	_, err := j.Pool.Exec(ctx, "ANALYZE txn_request")
	require.NoError(t, err)
	for name, c := range map[string]struct {
		f    query.Filter
		cond string // what an index condition must say
	}{
		"a merchant's day":           {query.Filter{From: day, To: day, MID: "898310058120003"}, "Index Cond: (hashtext(mid) = "},
		"a console user's merchants": {query.Filter{From: day, To: day, MIDs: []string{"898310058120003", "898310058120004"}}, "Index Cond: (hashtext(mid) = "},
		"a terminal's day":           {query.Filter{From: day, To: day, MID: "898310058120003", TID: "90000003"}, "Index Cond: (term = "},
		"a terminal, any merchant":   {query.Filter{From: day, To: day, TID: "90000003"}, "Index Cond: (term = "},
		"a merchant's week, by STAN": {query.Filter{From: day.AddDate(0, 0, -6), To: day, MID: "898310058120003", STAN: "000011"}, "Index Cond: (hashtext(mid) = "},
	} {
		sql, args, err := query.ListSQL(c.f, j.Vault)
		require.NoError(t, err, name)
		rows, err := j.Pool.Query(ctx, "EXPLAIN (COSTS OFF) "+sql, args...)
		require.NoError(t, err, name)
		var plan []string
		for rows.Next() {
			var line string
			require.NoError(t, rows.Scan(&line))
			plan = append(plan, line)
		}
		require.NoError(t, rows.Err())
		text := strings.Join(plan, "\n")
		today := journal.PartitionName(day)
		require.NotContains(t, text, "Seq Scan on "+today, "%s: the day read whole\n%s", name, text)
		require.Contains(t, text, c.cond, "%s\n%s", name, text)
	}
}
