package whatif_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/shoudan/shoudan/switch/journal"
	"github.com/shoudan/shoudan/switch/switchtest"
	"github.com/shoudan/shoudan/switch/whatif"
	"github.com/shoudan/shoudan/terminals"
	"github.com/stretchr/testify/require"
)

// BenchmarkWhatIfDay replays a day of 1,000,000 journaled transactions (the demo's 12,000 load
// terminals: 70% chip purchases, 20% 双免 taps of up to 1500.00, 5% voids, 5% refunds, with the
// rules and traces the switch writes) against a draft that halves the 双免 limit:
//
//	go test ./switch/whatif -run '^$' -bench WhatIfDay -benchtime 1x
//
// The target (issue 20) is under 30 s for the day on the 2-core development machine.
func BenchmarkWhatIfDay(b *testing.B) {
	const n = 1_000_000
	s := switchtest.Start(b, switchtest.Options{})
	ctx := context.Background()
	day := time.Now()
	y, m, d := day.Date()
	utcDay := time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
	live := s.Registry.Get()
	loads := []*terminals.Terminal{}
	for _, t := range live.Terminals() {
		if t.Serial[:5] == "LOAD-" {
			loads = append(loads, t)
		}
	}
	require.NotEmpty(b, loads)
	hash := sha256.Sum256([]byte("request"))
	const trace = "frame,terminal,signed-on,mac,device,merchant-trading,merchant-english-name,mcc-matches,cash-mcc,qps-enabled,qps-whitelist,qps-limit,void-original,refund-allowed,refund-original,refund-window,refund-amount"
	rows := make([][]any, 0, n)
	for i := range n {
		t := loads[i%len(loads)]
		kind, mti, entry, pin, amount, code, rule := "purchase", "0200", "051", true, int64(100+i%50000), "00", "issuer"
		switch r := i % 20; {
		case r < 4: // 双免
			entry, pin, amount = "072", false, int64(1000+(i*7919)%150000)
			if amount > 100000 {
				code, rule = "55", "qps-limit"
			}
		case r == 4:
			kind = "void"
		case r == 5:
			kind, mti = "refund", "0220"
		}
		state := "A"
		if code != "00" {
			state = "D"
		}
		term, err := s.Journal.TermNo(ctx, t.MID, t.TID)
		require.NoError(b, err)
		stan := fmt.Sprintf("%06d", i/len(loads))
		dkey, _ := journal.DupKey("000001", stan, mti)
		rows = append(rows, []any{journal.DayBase(utcDay) + 900_000_000_000 + int64(i), utcDay, utcDay, "production", t.MID, t.TID, "000001", stan, mti, kind,
			amount, entry, fmt.Sprintf("%012d", 500_000_000+i), code, state, rule, "", hash[:], journal.TraceChecks(trace), "", pin, t.Serial, "3.2.1", "G", term, dkey})
	}
	// the request rows as the journal writes them (txn is a view of them since migration 0021)
	_, err := s.Journal.Pool.CopyFrom(ctx, pgx.Identifier{"txn_request"}, []string{"id", "local_day", "settle_date", "env", "mid", "tid", "batch", "stan", "mti",
		"kind", "amount", "entry_mode", "rrn", "resp_code", "state", "rule", "reason", "req_hash", "checks", "req_mcc", "has_pin",
		"dev_serial", "dev_sdk", "dev_check", "term", "dkey"}, pgx.CopyFromRows(rows))
	require.NoError(b, err)
	_, err = s.Journal.Pool.Exec(ctx, "ANALYZE txn_request")
	require.NoError(b, err)
	draft := draft(b, s, `qps_limit: "1000.00"`, `qps_limit: "500.00"`)
	o := whatif.Options{From: utcDay, To: utcDay}
	b.ResetTimer()
	var r *whatif.Report
	for b.Loop() {
		r, err = whatif.Run(ctx, s.Journal, live, draft, o)
		require.NoError(b, err)
	}
	b.StopTimer()
	require.Equal(b, n, r.Examined)
	require.NotZero(b, r.Changed)
	b.ReportMetric(float64(n)/(b.Elapsed().Seconds()/float64(b.N)), "txn/s")
}
