package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	rc "github.com/shoudan/shoudan/responsecodes"
	"github.com/shoudan/shoudan/switch/journal"
	"github.com/shoudan/shoudan/terminals"
)

// The targets of issue 13 (a journal that holds for a year), on the same 2-core machine with
// the generator, the issuer and PostgreSQL on it.
const (
	targetSoakP99MS       = 10.0 // end-to-end p99 in the last interval
	targetSoakP99Growth   = 1.5  // last interval's p99 / first interval's
	targetSoakRSSGrowth   = 1.25 // switch RSS, last interval / first
	targetBytesPerTxn     = 700  // journal growth (heap, indexes, TOAST of every table) per transaction
	targetWALPerTxn       = 1536 // WAL bytes per transaction
	targetBurstP99Ratio   = 2.0  // open-loop p99 after a closed-loop burst / a fresh switch's
	defaultSoakMix        = "purchase=70,qps=15,void=5,reversal=5,status=5"
	soakTerminals         = 200
	minSoakForTargets     = 10 * time.Minute
	minSoakRateForTargets = 1000
)

// DBReading is one look at what the journal's database holds.
type DBReading struct {
	At        time.Time `json:"-"`
	Bytes     int64     `json:"bytes"`      // every relation of the database: heap, indexes, TOAST
	TxnBytes  int64     `json:"txn_bytes"`  // the partitions of txn_request, txn_outcome, txn_reversal
	Rows      int64     `json:"rows"`       // txn rows inserted (pg_stat_user_tables.n_tup_ins)
	Dead      int64     `json:"dead"`       // dead tuples, every table
	TxnDead   int64     `json:"txn_dead"`   // dead tuples in txn partitions
	WAL       int64     `json:"wal"`        // WAL position, bytes
	Updates   int64     `json:"updates"`    // updates of request and outcome rows
	HOT       int64     `json:"hot"`        // of which HOT (no index entries written)
	Vacuums   int64     `json:"autovacuum"` // autovacuum runs, every table
	BackendWr int64     `json:"backend_buffers_written"`
}

func readDB(ctx context.Context, conn *pgx.Conn) (DBReading, error) {
	r := DBReading{At: time.Now()}
	err := conn.QueryRow(ctx, `SELECT pg_database_size(current_database()),
		(SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0)::bigint FROM pg_inherits
			WHERE inhparent IN ('txn_request'::regclass, 'txn_outcome'::regclass, 'txn_reversal'::regclass)),
		(SELECT coalesce(sum(n_tup_ins), 0)::bigint FROM pg_stat_user_tables WHERE relname ~ '^txn_p[0-9]{8}$'),
		(SELECT coalesce(sum(n_dead_tup), 0)::bigint FROM pg_stat_user_tables),
		(SELECT coalesce(sum(n_dead_tup), 0)::bigint FROM pg_stat_user_tables WHERE relname ~ '^txn_[por][0-9]{8}$'),
		pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint,
		(SELECT coalesce(sum(n_tup_upd), 0)::bigint FROM pg_stat_user_tables WHERE relname ~ '^txn_[po][0-9]{8}$'),
		(SELECT coalesce(sum(n_tup_hot_upd), 0)::bigint FROM pg_stat_user_tables WHERE relname ~ '^txn_[po][0-9]{8}$'),
		(SELECT coalesce(sum(autovacuum_count), 0)::bigint FROM pg_stat_user_tables),
		(SELECT buffers_backend FROM pg_stat_bgwriter)`).Scan(
		&r.Bytes, &r.TxnBytes, &r.Rows, &r.Dead, &r.TxnDead, &r.WAL, &r.Updates, &r.HOT, &r.Vacuums, &r.BackendWr)
	return r, err
}

// DBGrowth is what a run added to the journal, per transaction journaled.
type DBGrowth struct {
	Rows        int64   `json:"rows"`
	BytesPerTxn float64 `json:"bytes_per_txn"`     // database growth / rows
	TxnPerRow   float64 `json:"txn_bytes_per_row"` // txn partitions' growth / rows
	WALPerTxn   float64 `json:"wal_bytes_per_txn"`
	HOTShare    float64 `json:"hot_share"` // HOT updates / updates of txn rows
	Dead        int64   `json:"dead_tuples"`
	TxnDead     int64   `json:"txn_dead_tuples"`
	Vacuums     int64   `json:"autovacuums"`
	BackendWr   int64   `json:"backend_buffers_written"`
	Tables      []Table `json:"tables,omitempty"` // where the bytes are, largest first
	// Closed is the journal once the run's days are compacted as the upkeep does with a closed
	// day (indexes rebuilt): what a day costs for the rest of its retention
	Closed *ClosedDays `json:"closed,omitempty"`
}

// ClosedDays is the run's growth after compaction.
type ClosedDays struct {
	BytesPerTxn float64 `json:"bytes_per_txn"`
	// ReversalPerTxn is the sealed reversals still held (the mix does not settle batches; a
	// settled batch's are deleted): the rest is what a settled day keeps
	ReversalPerTxn float64 `json:"reversal_bytes_per_txn"`
	Seconds        float64 `json:"compaction_s"`
}

// Table is one table's share of the journal (its partitions summed).
type Table struct {
	Name  string  `json:"name"`
	Bytes int64   `json:"bytes"`
	PerTx float64 `json:"bytes_per_txn"`
}

func growth(a, b DBReading) DBGrowth {
	g := DBGrowth{Rows: b.Rows - a.Rows, Dead: b.Dead, TxnDead: b.TxnDead, Vacuums: b.Vacuums - a.Vacuums, BackendWr: b.BackendWr - a.BackendWr}
	if g.Rows > 0 {
		g.BytesPerTxn = float64(b.Bytes-a.Bytes) / float64(g.Rows)
		g.TxnPerRow = float64(b.TxnBytes-a.TxnBytes) / float64(g.Rows)
		g.WALPerTxn = float64(b.WAL-a.WAL) / float64(g.Rows)
	}
	if u := b.Updates - a.Updates; u > 0 {
		g.HOTShare = float64(b.HOT-a.HOT) / float64(u)
	}
	return g
}

// tableSizes lists the user tables (a partitioned table with its partitions) by total size.
func tableSizes(ctx context.Context, conn *pgx.Conn, rows int64) ([]Table, error) {
	q, err := conn.Query(ctx, `SELECT coalesce(p.relname, c.relname), sum(pg_total_relation_size(c.oid))::bigint
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		LEFT JOIN pg_inherits i ON i.inhrelid = c.oid LEFT JOIN pg_class p ON p.oid = i.inhparent
		WHERE c.relkind = 'r' AND n.nspname = 'public'
		GROUP BY 1 ORDER BY 2 DESC`)
	if err != nil {
		return nil, err
	}
	var out []Table
	for q.Next() {
		var t Table
		if err := q.Scan(&t.Name, &t.Bytes); err != nil {
			return nil, err
		}
		if rows > 0 {
			t.PerTx = float64(t.Bytes) / float64(rows)
		}
		if t.Bytes > 64<<10 {
			out = append(out, t)
		}
	}
	return out, q.Err()
}

// Interval is one interval (a minute by default) of a soak.
type Interval struct {
	Index       int                `json:"index"`
	Seconds     float64            `json:"end_s"` // the interval's end, from the start of the load
	Throughput  float64            `json:"throughput_per_s"`
	Requests    int64              `json:"requests"`
	Errors      int64              `json:"errors"`
	NotApproved int64              `json:"not_approved"` // answered, but not 00
	LatencyMS   map[string]float64 `json:"latency_ms"`
	AddedMS     map[string]float64 `json:"added_ms"`
	SwitchMB    float64            `json:"switch_rss_mb"`
	JournalMB   float64            `json:"journal_mb"`
	BytesPerTxn float64            `json:"bytes_per_txn"` // since the start of the soak
	WALPerTxn   float64            `json:"wal_bytes_per_txn"`
	Dead        int64              `json:"dead_tuples"`
	HOTShare    float64            `json:"hot_share"`
	CPU         *Share             `json:"cpu,omitempty"` // where the two cores went
}

// soakWatch reads the switch's RSS and the journal at the end of every interval while a load runs.
type soakWatch struct {
	mu       sync.Mutex
	readings []DBReading
	rss      []float64
	err      error
}

func (w *soakWatch) run(ctx context.Context, url string, pid int, every time.Duration, stop <-chan struct{}, progress io.Writer) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		w.err = err
		return
	}
	defer conn.Close(context.Background())
	look := func() {
		r, err := readDB(ctx, conn)
		w.mu.Lock()
		defer w.mu.Unlock()
		if err != nil {
			w.err = err
			return
		}
		w.readings = append(w.readings, r)
		w.rss = append(w.rss, float64(rssKB(pid))/1024)
		if n := len(w.readings); n > 1 && progress != nil {
			g := growth(w.readings[0], r)
			fmt.Fprintf(progress, "  %6.0f s: journal %6.0f MB  %5.0f B/txn  WAL %5.0f B/txn  dead %7d  switch RSS %4.0f MB\n",
				r.At.Sub(w.readings[0].At).Seconds(), float64(r.Bytes)/(1<<20), g.BytesPerTxn, g.WALPerTxn, r.Dead, w.rss[n-1])
		}
	}
	look()
	tk := time.NewTicker(every)
	defer tk.Stop()
	for {
		select {
		case <-stop:
			look()
			return
		case <-tk.C:
			look()
		}
	}
}

// soak runs an open loop with a realistic mix for d against the switch and reports every interval.
func (sw *benchSwitch) soak(ctx context.Context, reg *terminals.Registry, load loadFlags, every time.Duration, progress io.Writer) (*BenchPhase, error) {
	load.addr = sw.addr
	w := &soakWatch{}
	where := &whereWatch{}
	stop := make(chan struct{})
	var watched sync.WaitGroup
	started := make(chan struct{})
	var start time.Time
	load.onStart = func() { start = time.Now(); close(started) }
	watched.Add(2)
	go func() {
		defer watched.Done()
		select {
		case <-started:
		case <-ctx.Done():
			return
		}
		w.run(ctx, sw.dbURL, sw.proc.Process.Pid, every, stop, progress)
	}()
	go func() {
		defer watched.Done()
		where.run(ctx, sw.dbURL, sw.proc.Process.Pid, sw.issuer.Process.Pid, postmasterPID(sw.pgData), 250*time.Millisecond, stop)
	}()
	lr, samples, err := runLoad(ctx, reg, load, progress)
	close(stop)
	watched.Wait()
	if err != nil {
		return nil, err
	}
	if w.err != nil {
		return nil, fmt.Errorf("reading the journal during the soak: %w", w.err)
	}
	if where.err != nil {
		return nil, fmt.Errorf("sampling PostgreSQL during the soak: %w", where.err)
	}
	if sw.dir != "" {
		path := filepath.Join(sw.dir, "timeline.csv")
		if err := where.writeTimeline(path, start, samples, load.duration); err != nil {
			return nil, err
		}
		fmt.Fprintf(progress, "  a line per second (latency, CPU of each process, vacuum, waits): %s\n", path)
	}
	issuerUS, err := issuerTimes(ctx, sw.dbURL)
	if err != nil {
		return nil, err
	}
	p := &BenchPhase{LoadReport: lr}
	p.AddedMS = percentiles(added(samples, issuerUS))
	// intervals by scheduled time: a switch that falls behind shows as latency, not as a
	// shifted interval
	n := max(1, int((load.duration+every-1)/every))
	buckets := make([][]sample, n)
	for _, s := range samples {
		i := min(int(s.at/every), n-1)
		buckets[i] = append(buckets[i], s)
	}
	for i, b := range buckets {
		iv := &Interval{Index: i + 1, Seconds: (time.Duration(i+1) * every).Seconds(), LatencyMS: map[string]float64{}}
		var lats []float64
		for _, s := range b {
			iv.Requests++
			switch {
			case s.err:
				iv.Errors++
			case s.codeOf() != rc.Approved:
				iv.NotApproved++
			}
			if !s.err {
				lats = append(lats, s.lat.Seconds()*1000)
			}
		}
		secs := every.Seconds()
		if i == n-1 {
			secs = (load.duration - time.Duration(i)*every).Seconds()
		}
		iv.Throughput = float64(iv.Requests) / secs
		iv.LatencyMS = percentiles(lats)
		iv.AddedMS = percentiles(added(b, issuerUS))
		iv.CPU = where.share(start.Add(time.Duration(i)*every), start.Add(time.Duration(i+1)*every))
		if i+1 < len(w.readings) {
			r := w.readings[i+1]
			g := growth(w.readings[0], r)
			gi := growth(w.readings[i], r)
			iv.SwitchMB, iv.JournalMB = w.rss[i+1], float64(r.Bytes)/(1<<20)
			iv.BytesPerTxn, iv.WALPerTxn, iv.Dead, iv.HOTShare = g.BytesPerTxn, gi.WALPerTxn, r.Dead, gi.HOTShare
		}
		p.Intervals = append(p.Intervals, iv)
	}
	p.SwitchMB = slices.Max(w.rss)
	if len(w.readings) > 1 {
		last := w.readings[len(w.readings)-1]
		g := growth(w.readings[0], last)
		p.DB = &g
		conn, err := pgx.Connect(ctx, sw.dbURL)
		if err != nil {
			return nil, err
		}
		defer conn.Close(context.Background())
		if p.DB.Tables, err = tableSizes(ctx, conn, last.Rows); err != nil {
			return nil, err
		}
		if p.DB.Closed, err = compactRun(ctx, conn, w.readings[0], start, time.Now()); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// issuerTimes is every journaled transaction's issuer round trip, by RRN.
func issuerTimes(ctx context.Context, url string) (map[string]int64, error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, "SELECT rrn, issuer_us FROM txn WHERE issuer_us IS NOT NULL AND kind IN ('purchase', 'void')")
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for rows.Next() {
		var rrn string
		var us int64
		if err := rows.Scan(&rrn, &us); err != nil {
			return nil, err
		}
		out[rrn] = us
	}
	return out, rows.Err()
}

// added is the latency the switch added to each approved purchase or void in samples: the
// terminal's round trip minus the issuer's, in ms.
func added(samples []sample, issuerUS map[string]int64) []float64 {
	var out []float64
	for _, s := range samples {
		if k := s.kind(); s.err || s.codeOf() != rc.Approved || s.rrnOf() == "" || (k != "purchase" && k != "qps" && k != "void") {
			continue
		}
		if us, ok := issuerUS[s.rrnOf()]; ok {
			out = append(out, float64(s.rtt.Microseconds()-us)/1000)
		}
	}
	return out
}

// soakTargets judges a soak: the first and last intervals, and the whole run's journal figures.
func soakTargets(p *BenchPhase, d time.Duration, rate float64) []BenchTarget {
	if len(p.Intervals) < 2 || p.DB == nil {
		return nil
	}
	first, last := p.Intervals[0], p.Intervals[len(p.Intervals)-1]
	if len(p.Intervals) > 2 && last.Requests < first.Requests/2 { // a short tail interval says little
		last = p.Intervals[len(p.Intervals)-2]
	}
	if first.LatencyMS["p99"] == 0 || last.LatencyMS["p99"] == 0 {
		return nil
	}
	cond := d >= minSoakForTargets && rate >= minSoakRateForTargets
	var out []BenchTarget
	add := func(name, target string, v float64, met bool) {
		out = append(out, BenchTarget{Name: name, Target: target, Measured: v, Met: met, Conditions: cond})
	}
	add("soak: p99 ms in the last interval", fmt.Sprintf("<= %.0f", targetSoakP99MS), last.LatencyMS["p99"], last.LatencyMS["p99"] <= targetSoakP99MS)
	r := last.LatencyMS["p99"] / first.LatencyMS["p99"]
	add("soak: p99 last interval / first", fmt.Sprintf("<= %.2f", targetSoakP99Growth), r, r <= targetSoakP99Growth)
	if first.SwitchMB > 0 {
		r := last.SwitchMB / first.SwitchMB
		add("soak: switch RSS last interval / first", fmt.Sprintf("<= %.2f", targetSoakRSSGrowth), r, r <= targetSoakRSSGrowth)
	}
	add("soak: journal bytes per transaction", fmt.Sprintf("<= %d", targetBytesPerTxn), p.DB.BytesPerTxn, p.DB.BytesPerTxn <= targetBytesPerTxn)
	add("soak: WAL bytes per transaction", fmt.Sprintf("<= %d", targetWALPerTxn), p.DB.WALPerTxn, p.DB.WALPerTxn <= targetWALPerTxn)
	return out
}

func printIntervals(w io.Writer, p *BenchPhase) error {
	fmt.Fprintf(w, "\n%s, every interval:\n", p.Name)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "until s\ttxn/s\terrors\tnot 00\tp50 ms\tp99\tp99.9\tadded p50\tadded p99\tadded p99.9\tRSS MB\tjournal MB\tB/txn\tWAL B/txn\tdead\tHOT\tCPU switch\tissuer\tpg\tvacuum\tgenerator\ttxn vacuum s\t")
	for _, iv := range p.Intervals {
		l, a := iv.LatencyMS, iv.AddedMS
		fmt.Fprintf(tw, "%.0f\t%.0f\t%d\t%d\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.0f\t%.0f\t%.0f\t%.0f\t%d\t%.0f%%\t", iv.Seconds, iv.Throughput, iv.Errors, iv.NotApproved,
			l["p50"], l["p99"], l["p99.9"], a["p50"], a["p99"], a["p99.9"], iv.SwitchMB, iv.JournalMB, iv.BytesPerTxn, iv.WALPerTxn, iv.Dead, iv.HOTShare*100)
		if c := iv.CPU; c != nil {
			fmt.Fprintf(tw, "%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.0f\t", c.Switch, c.Issuer, c.Postgres, c.Vacuum, c.Bench, c.VacuumS)
		}
		fmt.Fprintln(tw)
	}
	fmt.Fprintln(tw, "(CPU in cores: 1.00 is one of the machine's cores all the interval)")
	if err := tw.Flush(); err != nil {
		return err
	}
	if p.DB != nil {
		printGrowth(w, p.DB)
	}
	return nil
}

// compactRun compacts the days the run wrote to (journal.CompactDay) and measures the growth
// from first again.
func compactRun(ctx context.Context, conn *pgx.Conn, first DBReading, from, to time.Time) (*ClosedDays, error) {
	began := time.Now()
	for d := from.AddDate(0, 0, -1); !d.After(to.AddDate(0, 0, 1)); d = d.AddDate(0, 0, 1) { // whatever the switch's zone
		if _, err := journal.CompactDay(ctx, conn, d); err != nil && !errors.Is(err, journal.ErrNoPartition) {
			return nil, err
		}
	}
	r, err := readDB(ctx, conn)
	if err != nil {
		return nil, err
	}
	g := growth(first, r)
	c := &ClosedDays{BytesPerTxn: g.BytesPerTxn, Seconds: time.Since(began).Seconds()}
	ts, err := tableSizes(ctx, conn, g.Rows)
	if err != nil {
		return nil, err
	}
	for _, t := range ts {
		if t.Name == "txn_reversal" {
			c.ReversalPerTxn = t.PerTx
		}
	}
	return c, nil
}

func printGrowth(w io.Writer, g *DBGrowth) {
	fmt.Fprintf(w, "journal: %d rows, %.0f B/txn (txn partitions %.0f B/row), WAL %.0f B/txn, HOT %.0f%% of txn updates, dead tuples at the end %d (txn %d), %d autovacuums, %d buffers written by backends\n",
		g.Rows, g.BytesPerTxn, g.TxnPerRow, g.WALPerTxn, g.HOTShare*100, g.Dead, g.TxnDead, g.Vacuums, g.BackendWr)
	if len(g.Tables) > 0 {
		var parts []string
		for _, t := range g.Tables {
			parts = append(parts, fmt.Sprintf("%s %.0f B/txn", t.Name, t.PerTx))
		}
		fmt.Fprintf(w, "  by table: %s\n", strings.Join(parts, ", "))
	}
	if c := g.Closed; c != nil {
		fmt.Fprintf(w, "  once the day is closed (indexes rebuilt as the upkeep does, %.0f s): %.0f B/txn; %.0f B/txn once the batches settle (their %.0f B/txn of sealed reversals deleted)\n",
			c.Seconds, c.BytesPerTxn, c.BytesPerTxn-c.ReversalPerTxn, c.ReversalPerTxn)
	}
}
