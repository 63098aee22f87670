package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/shoudan/shoudan/switch/journal"
	"github.com/shoudan/shoudan/switch/switchtest"
	"github.com/stretchr/testify/require"
)

// TestDoctorFindsAPartitionWithoutItsKey: a request partition without its own duplicate key
// (made by hand, not by txn_ensure_partition) is a BAD finding that names it; the switch's own
// partitions have theirs.
func TestDoctorFindsAPartitionWithoutItsKey(t *testing.T) {
	ctx := t.Context()
	j := switchtest.Journal(t)
	line := func() string {
		var out bytes.Buffer
		_, err := doctor(ctx, j.Pool, 400, &out)
		require.NoError(t, err)
		for _, l := range strings.Split(out.String(), "\n") {
			if strings.Contains(l, "without their duplicate key") {
				return l
			}
		}
		t.Fatalf("no duplicate-key finding in\n%s", out.String())
		return ""
	}
	require.True(t, strings.HasPrefix(strings.TrimSpace(line()), "OK"), line())
	tomorrow := journal.PartitionName(time.Now().AddDate(0, 0, 1))
	_, err := j.Pool.Exec(ctx, "SELECT txn_ensure_partition(current_date + 1)")
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(strings.TrimSpace(line()), "OK"), "a partition the switch made has its key")
	_, err = j.Pool.Exec(ctx, "DROP INDEX "+tomorrow+"_key")
	require.NoError(t, err)
	l := line()
	require.True(t, strings.HasPrefix(strings.TrimSpace(l), "BAD"), l)
	require.Contains(t, l, tomorrow)
	_, err = j.Pool.Exec(ctx, "SELECT txn_request_keys($1)", tomorrow)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(strings.TrimSpace(line()), "OK"), "the hint's statement mends it")
}
