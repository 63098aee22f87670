package settlement_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/shoudan/shoudan/switch/journal"
	"github.com/shoudan/shoudan/switch/settlement"
	"github.com/shoudan/shoudan/terminals"
)

// BenchmarkCloseDay closes one settlement date of 1,000,000 journaled transactions over 2,000
// merchants (purchases, declines, voids, reversals, refunds): one op is a whole close (every
// merchant's settlement, refunds, pay-outs, balances). The journal is loaded once; each op
// starts from empty settlement tables.
//
//	flock /work/wt/.bench.lock go test ./switch/settlement -run '^$' -bench CloseDay -benchtime 3x
var benchDay struct {
	once sync.Once
	url  string
}

func BenchmarkCloseDay(b *testing.B) {
	const total, merchants = 1_000_000, 2000
	ctx := context.Background()
	conf := weekConf(b)
	loaded := true
	benchDay.once.Do(func() {
		loaded = false
		g := newGenerator(conf) // no rows: only the migrated database
		benchDay.url = freshDB(b, g)
	})
	url := benchDay.url
	pool := newPool(b, url)
	d := date("2026-10-05")
	open := conf.Cutoff.At(d.AddDate(0, 0, -1))
	mid := func(i int) string { return fmt.Sprintf("8983100%04d%04d", 5000+i%1000, i) }
	ms := make([]terminals.Merchant, merchants)
	for i := range ms {
		ms[i] = terminals.Merchant{MID: mid(i), MCC: fmt.Sprintf("%04d", 5000+i%1000)}
	}
	reg := terminals.NewRegistry(terminals.DefaultRules(), ms, nil)
	s := &settlement.Settler{DB: pool, Config: conf, Registry: func() *terminals.Registry { return reg }, Now: func() time.Time { return open.Add(48 * time.Hour) },
		Log: slog.New(slog.NewTextHandler(os.Stderr, nil))}
	if !loaded {
		load(b, url, conf, open, total, merchants, mid)
	}
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		b.StopTimer()
		if _, err := pool.Exec(ctx, "TRUNCATE settle_day, settle_merchant, merchant_account, refund_clearing, payout, balance_entry"); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		t0 := time.Now()
		rs, err := s.Close(ctx, d)
		if err != nil {
			b.Fatal(err)
		}
		if len(rs) != 1 || rs[0].Merchants != merchants {
			b.Fatalf("closed %+v", rs)
		}
		b.Logf("closed %s: %d transactions, %d merchants in %s", d.Format("2006-01-02"), rs[0].Txns, rs[0].Merchants, time.Since(t0).Round(time.Millisecond))
	}
	b.ReportMetric(float64(total)*float64(b.N)/b.Elapsed().Seconds(), "txn/s")
}

// load writes total transactions of one settlement date (from open) into the journal.
func load(b *testing.B, url string, conf *settlement.Config, open time.Time, total, merchants int, mid func(int) string) {
	ctx := context.Background()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		b.Fatal(err)
	}
	// one partition per local day
	if _, err := c.Exec(ctx, "SELECT txn_ensure_partition(d::date) FROM generate_series($1::date - 2, $1::date + 2, '1 day') d", "2026-10-05"); err != nil {
		b.Fatal(err)
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	start := time.Now()
	i := 0
	var lastPurchase = map[int]int64{}
	// each merchant's terminal number (journal migration 0024), before the COPY holds the connection
	terms := make([]int32, merchants)
	for m := range terms {
		if err := c.QueryRow(ctx, "SELECT txn_term_no($1, '10000001')", mid(m)).Scan(&terms[m]); err != nil {
			b.Fatal(err)
		}
	}
	src := pgx.CopyFromFunc(func() ([]any, error) {
		if i == total {
			return nil, nil
		}
		i++
		id := int64(i)
		m := rnd.IntN(merchants)
		at := open.Add(time.Duration(i) * (24 * time.Hour / time.Duration(total)))
		lt := at.In(time.Local)
		ld := time.Date(lt.Year(), lt.Month(), lt.Day(), 0, 0, 0, 0, time.UTC)
		fid := journal.DayBase(ld) + id // journal ids carry their day
		kind, mti, resp, state, amount := "purchase", "0200", "00", "A", 100+rnd.Int64N(500000)
		var orig any
		switch x := rnd.IntN(100); {
		case x < 7:
			resp, state = "51", "D"
		case x < 10 && lastPurchase[m] != 0:
			kind, orig = "void", lastPurchase[m]
			delete(lastPurchase, m)
		case x < 12 && lastPurchase[m] != 0:
			kind, mti, orig = "reversal", "0400", lastPurchase[m]
			delete(lastPurchase, m)
		case x < 15:
			kind, mti, amount = "refund", "0220", 100+rnd.Int64N(20000)
		default:
			lastPurchase[m] = fid
		}
		stan := fmt.Sprintf("%06d", id%1000000)
		dkey, _ := journal.DupKey("000001", stan, mti)
		return []any{fid, at, ld, conf.Cutoff.Date(at), "production", mid(m), "10000001", "000001", stan,
			mti, kind, amount, "622202******0123", fmt.Sprintf("%012d", id), resp, state, resp == "00", []byte{1}, orig, fmt.Sprintf("%04d", 5000+m%1000), terms[m], dkey}, nil
	})
	// the request rows as the journal writes them (txn is a view of them since migration 0021)
	if _, err := c.CopyFrom(ctx, pgx.Identifier{"txn_request"}, []string{"id", "created_at", "local_day", "settle_date", "env", "mid", "tid", "batch", "stan",
		"mti", "kind", "amount", "pan_masked", "rrn", "resp_code", "state", "went_upstream", "req_hash", "orig_id", "mcc", "term", "dkey"}, src); err != nil {
		b.Fatal(err)
	}
	if _, err := c.Exec(ctx, "ANALYZE txn_request"); err != nil {
		b.Fatal(err)
	}
	c.Close(ctx)
	b.Logf("loaded %d transactions in %s", total, time.Since(start).Round(time.Millisecond))
}
