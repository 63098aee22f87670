package console_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/shoudan/shoudan/switch/backoffice"
	"github.com/shoudan/shoudan/switch/console"
	"github.com/shoudan/shoudan/switch/journal"
	"github.com/shoudan/shoudan/switch/query"
	"github.com/shoudan/shoudan/switch/switchtest"
	"github.com/shoudan/shoudan/terminals"
)

// The benchmark journal: BenchRows transactions over BenchDays days, BenchMerchants merchants of
// BenchTerminals terminals each, made in SQL (a terminal would take hours to make a million).
const (
	BenchRows      = 1_000_000
	BenchDays      = 10
	BenchMerchants = 10
	BenchTerminals = 20
)

var bench struct {
	once sync.Once
	j    *journal.Journal
	day  time.Time
	err  error
}

// benchJournal fills a fresh journal database once per run (about a minute), or uses
// $SHOUDAN_BENCH_DB when set (a database filled by an earlier run).
func benchJournal(b *testing.B) (*journal.Journal, time.Time) {
	bench.once.Do(func() {
		ctx := context.Background()
		url := os.Getenv("SHOUDAN_BENCH_DB")
		fill := url == ""
		if fill {
			url = switchtest.Database(b)
		}
		key := make([]byte, 32)
		rand.Read(key)
		v, _ := journal.NewVault(key)
		j, err := journal.Open(ctx, url, v)
		if err != nil {
			bench.err = err
			return
		}
		bench.j = j
		bench.day = time.Date(2026, 11, 1, 0, 0, 0, 0, time.Local).AddDate(0, 0, BenchDays/2)
		if !fill {
			return
		}
		start := time.Now()
		// rows in the order a journal grows: day by day (BenchRows/BenchDays a day), merchants and
		// terminals interleaved within the day; every 20th declined, every 7th a foreign card
		// organisation, amounts 1.00 .. 999.99
		// one partition per day, ids that carry their day (journal.DayBase)
		_, bench.err = j.Pool.Exec(ctx, "SELECT txn_ensure_partition($1::date + g) FROM generate_series(0, $2::int) g",
			bench.day.AddDate(0, 0, -BenchDays/2).Format("2006-01-02"), BenchDays)
		if bench.err != nil {
			b.Fatal(bench.err)
		}
		_, bench.err = j.Pool.Exec(ctx, `
			INSERT INTO txn_request (id, local_day, settle_date, env, mid, tid, batch, stan, mti, kind, proc_code, amount, entry_mode,
				pan_masked, pan_hash, card_org, mcc, rrn, auth_code, resp_code, state, rule, reason, req_hash, operator, created_at, term, dkey)
			SELECT txn_id_base(d) + nextval('txn_id_seq'), d, d, 'production', m, t, '000001', lpad(i::text, 7, '0'), '0200', 'purchase', '000000',
				100 + (i * 7919) % 99900, '051', '622202*********' || lpad((i % 10000)::text, 4, '0'),
				decode(md5((i % 50000)::text), 'hex'), CASE WHEN i % 7 = 0 THEN 'VIS' ELSE 'CUP' END, '5812',
				lpad(i::text, 12, '0'), lpad((i % 999999)::text, 6, '0'),
				CASE WHEN i % 20 = 0 THEN '51' ELSE '00' END, CASE WHEN i % 20 = 0 THEN 'D' ELSE 'A' END,
				'issuer', 'issuer answered', '\x00'::bytea, lpad((1 + i % 3)::text, 2, '0'),
				d + make_interval(secs => (i % ($5 / $1)) * 86400.0 / ($5 / $1)), txn_term_no(m, t), txn_dkey('000001', lpad(i::text, 7, '0'), '0200')
			FROM (SELECT i, $3::date + ((i - 1) / ($5 / $1))::int AS d, '8983100581' || lpad((i % $2)::text, 5, '0') AS m,
				lpad((10000000 + (i / $2) % $4)::text, 8, '0') AS t FROM generate_series(1::bigint, $5) AS i) s`,
			BenchDays, BenchMerchants, bench.day.AddDate(0, 0, -BenchDays/2).Format("2006-01-02"), BenchTerminals, BenchRows)
		if bench.err == nil {
			_, bench.err = j.Pool.Exec(ctx, "VACUUM ANALYZE txn_request, txn_outcome")
		}
		b.Logf("journal of %d transactions made in %s", BenchRows, time.Since(start).Round(time.Second))
	})
	if bench.err != nil {
		b.Fatal(bench.err)
	}
	return bench.j, bench.day
}

// BenchmarkQueryDayMerchant is the console's transaction page for one merchant and one day over
// a journal of a million transactions: the first page of 50 newest first and the total count,
// then the same day's summary by card organisation (the home page).
func BenchmarkQueryDayMerchant(b *testing.B) {
	j, day := benchJournal(b)
	ctx := context.Background()
	f := query.Filter{From: day, To: day, MID: "898310058100003", Limit: console.PageSize}
	if path := os.Getenv("SHOUDAN_BENCH_EXPLAIN"); path != "" {
		explain(b, j, path, func(j *journal.Journal) {
			query.List(ctx, j, f)
			query.Summarize(ctx, j, f, query.ByOrg, nil)
		})
	}
	var total int64
	for b.Loop() {
		p, err := query.List(ctx, j, f)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := query.Summarize(ctx, j, f, query.ByOrg, nil); err != nil {
			b.Fatal(err)
		}
		total = p.Total
	}
	if total != BenchRows/BenchDays/BenchMerchants {
		b.Fatalf("the day and merchant have %d transactions, want %d", total, BenchRows/BenchDays/BenchMerchants)
	}
	b.ReportMetric(float64(total), "rows-matched")
}

// BenchmarkQueryOldestDayMerchant is the same for the journal's oldest day: the newest-first
// page cannot come from the end of the primary key.
func BenchmarkQueryOldestDayMerchant(b *testing.B) {
	j, day := benchJournal(b)
	ctx := context.Background()
	day = day.AddDate(0, 0, -BenchDays/2)
	f := query.Filter{From: day, To: day, MID: "898310058100003", Limit: console.PageSize}
	if path := os.Getenv("SHOUDAN_BENCH_EXPLAIN"); path != "" {
		explain(b, j, path+".oldest", func(j *journal.Journal) { query.List(ctx, j, f) })
	}
	for b.Loop() {
		p, err := query.List(ctx, j, f)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := query.Summarize(ctx, j, f, query.ByOrg, nil); err != nil {
			b.Fatal(err)
		}
		if p.Total != BenchRows/BenchDays/BenchMerchants {
			b.Fatalf("the day and merchant have %d transactions", p.Total)
		}
	}
}

// BenchmarkQueryDayMerchantLastPage is the last page of the same query (OFFSET paging).
func BenchmarkQueryDayMerchantLastPage(b *testing.B) {
	j, day := benchJournal(b)
	ctx := context.Background()
	n := BenchRows / BenchDays / BenchMerchants
	f := query.Filter{From: day, To: day, MID: "898310058100003", Limit: console.PageSize, Offset: n - console.PageSize}
	for b.Loop() {
		if _, err := query.List(ctx, j, f); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkQueryCardLast4 is a search by the card's last 4 digits over a merchant's day.
func BenchmarkQueryCardLast4(b *testing.B) {
	j, day := benchJournal(b)
	ctx := context.Background()
	f := query.Filter{From: day, To: day, MID: "898310058100003", Last4: "0042", Limit: console.PageSize}
	for b.Loop() {
		if _, err := query.List(ctx, j, f); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCSVExport streams five days of one merchant (50,000 rows, well above the 20,000-row
// Excel limit) to CSV and reports the peak heap: flat, whatever the row count.
func BenchmarkCSVExport(b *testing.B) {
	j, day := benchJournal(b)
	ctx := context.Background()
	reg := terminals.NewHolder(terminals.NewRegistry(terminals.DefaultRules(), nil, nil))
	c, err := console.New(j, backoffice.NewStore(j.Pool), reg, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	f := query.Filter{From: day, To: day.AddDate(0, 0, 4)}
	f.MIDs = []string{"898310058100001"}
	var rows atomic.Int64
	var peak uint64
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	for b.Loop() {
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() { // sample the heap while the export runs
			defer close(done)
			var m runtime.MemStats
			for {
				runtime.ReadMemStats(&m)
				if m.HeapInuse > peak {
					peak = m.HeapInuse
				}
				select {
				case <-stop:
					return
				case <-time.After(5 * time.Millisecond):
				}
			}
		}()
		cw := &countingWriter{}
		if err := c.WriteCSV(ctx, cw, func(string) string { return "" }, f); err != nil {
			b.Fatal(err)
		}
		close(stop)
		<-done
		rows.Store(cw.lines)
		b.SetBytes(cw.n)
	}
	b.ReportMetric(float64(rows.Load()-2), "rows")
	b.ReportMetric(float64(peak-base.HeapInuse)/(1<<20), "peak-heap-MB")
}

// explain runs fn against the journal through a pool that records every statement, then writes
// the plan PostgreSQL chose for each (EXPLAIN ANALYZE) to path: which indexes answer the query.
func explain(b *testing.B, j *journal.Journal, path string, fn func(*journal.Journal)) {
	ctx := context.Background()
	cfg := j.Pool.Config().Copy()
	rec := &recorder{}
	cfg.ConnConfig.Tracer = rec
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	fn(&journal.Journal{Pool: pool, Vault: j.Vault})
	out, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer out.Close()
	for _, q := range rec.queries {
		rows, err := j.Pool.Query(ctx, "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) "+q.sql, q.args...)
		if err != nil {
			b.Fatal(err)
		}
		plan := ""
		for rows.Next() {
			var line string
			rows.Scan(&line)
			plan += line + "\n"
		}
		rows.Close()
		fmt.Fprintf(out, "%s\n%s\n", q.sql, plan)
	}
}

type recorder struct {
	mu      sync.Mutex
	queries []struct {
		sql  string
		args []any
	}
}

func (r *recorder) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.queries = append(r.queries, struct {
		sql  string
		args []any
	}{d.SQL, d.Args})
	return ctx
}

func (r *recorder) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

type countingWriter struct{ n, lines int64 }

func (w *countingWriter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	for _, c := range p {
		if c == '\n' {
			w.lines++
		}
	}
	return len(p), nil
}

var _ io.Writer = (*countingWriter)(nil)
