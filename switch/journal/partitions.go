package journal

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
)

// The transaction table is partitioned by day (local_day): txn_pYYYYMMDD. Ids carry their day
// (id = days since 2000-01-01 × 10^12 + a sequence), so whatever knows an id knows its partition.
const idsPerDay = 1_000_000_000_000

var epoch2000 = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

func dayNumber(d time.Time) int64 {
	y, m, dd := d.Date()
	return int64(time.Date(y, m, dd, 0, 0, 0, 0, time.UTC).Sub(epoch2000) / (24 * time.Hour))
}

// DayOf is the local day (a UTC midnight) of the transaction with this id.
func DayOf(id int64) time.Time { return epoch2000.AddDate(0, 0, int(id/idsPerDay)) }

// dayBase is the smallest id a transaction of day d can have.
func dayBase(d time.Time) int64 { return dayNumber(d) * idsPerDay }

// DayBase is the smallest id of day d, for tools that load rows in bulk: an id of day d is
// DayBase(d) + a number below 10^12 (the journal's own come from txn_id_seq; SQL: txn_id_base).
func DayBase(d time.Time) int64 { return dayBase(d) }

// PartitionName is the partition holding day d (its calendar date as written).
func PartitionName(d time.Time) string { return "txn_p" + d.Format("20060102") }

// PartitionOf is the partition holding the transaction with this id (its request row).
func PartitionOf(id int64) string { return PartitionName(DayOf(id)) }

// OutcomeName and ReversalName are day d's partitions of txn_outcome and txn_reversal
// (migration 0021); OutcomeOf and ReversalOf those of the transaction with this id.
func OutcomeName(d time.Time) string  { return "txn_o" + d.Format("20060102") }
func ReversalName(d time.Time) string { return "txn_r" + d.Format("20060102") }
func OutcomeOf(id int64) string       { return OutcomeName(DayOf(id)) }
func ReversalOf(id int64) string      { return ReversalName(DayOf(id)) }

var partitionRE = regexp.MustCompile(`^txn_p(\d{8})$`)

// partitions remembers the days whose partition is known to exist, so that the write path
// asks the database only for a day it has not seen.
type partitions struct {
	mu    sync.Mutex
	known map[int64]bool
}

func (p *partitions) ensure(ctx context.Context, j *Journal, d time.Time) error {
	n := dayNumber(d)
	p.mu.Lock()
	ok := p.known[n]
	p.mu.Unlock()
	if ok {
		return nil
	}
	if err := j.createPartition(ctx, d); err != nil {
		return fmt.Errorf("%w: partition for %s: %v", ErrUnavailable, d.Format("2006-01-02"), err)
	}
	p.mu.Lock()
	if p.known == nil {
		p.known = map[int64]bool{}
	}
	p.known[n] = true
	p.mu.Unlock()
	return nil
}

func (p *partitions) forget(d time.Time) {
	p.mu.Lock()
	delete(p.known, dayNumber(d))
	p.mu.Unlock()
}

// createPartition creates day d's partition when it is missing. Creating a partition locks the
// parent table briefly: lock_timeout keeps a long reader from stalling the write path behind it.
func (j *Journal) createPartition(ctx context.Context, d time.Time) error {
	tx, err := j.Pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(ctx, "SET LOCAL lock_timeout = '3s'"); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, "SELECT txn_ensure_partition($1::date)", d.Format("2006-01-02")); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// Partition is one day of the journal.
type Partition struct {
	Name  string
	Day   time.Time
	Rows  int64 // estimate (pg_class.reltuples; -1 when never analysed)
	Bytes int64 // heap, indexes and TOAST of its request, outcome and reversal partitions
	Note  string
	// Compacted: when the upkeep rebuilt the day's indexes (compact.go); zero = not yet
	Compacted time.Time
}

// Partitions lists the attached partitions, oldest first.
func (j *Journal) Partitions(ctx context.Context) ([]Partition, error) {
	rows, err := j.Pool.Query(ctx, `SELECT c.relname, c.reltuples::bigint,
			pg_total_relation_size(c.oid) + coalesce(pg_total_relation_size(to_regclass('txn_o' || substr(c.relname, 6))), 0)
				+ coalesce(pg_total_relation_size(to_regclass('txn_r' || substr(c.relname, 6))), 0),
			coalesce(obj_description(c.oid, 'pg_class'), ''),
			(SELECT k.at FROM txn_compacted k WHERE k.day = to_date(substr(c.relname, 6), 'YYYYMMDD'))
		FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'txn_request'::regclass ORDER BY c.relname`)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	defer rows.Close()
	var out []Partition
	for rows.Next() {
		var p Partition
		var at *time.Time
		if err := rows.Scan(&p.Name, &p.Rows, &p.Bytes, &p.Note, &at); err != nil {
			return nil, err
		}
		if at != nil {
			p.Compacted = *at
		}
		m := partitionRE.FindStringSubmatch(p.Name)
		if m == nil {
			continue
		}
		p.Day, _ = time.Parse("20060102", m[1])
		out = append(out, p)
	}
	return out, rows.Err()
}

// Retention is the journal's upkeep policy.
type Retention struct {
	Days       int    // partitions older than this many days are detached and archived
	ArchiveDir string // where archived partitions go (CSV, gzip)
	Ahead      int    // partitions created ahead of today (default 3)
}

// Maintain keeps partitions ahead of the clock, applies retention and prunes acknowledged
// reversals every interval until ctx ends (the switch runs MaintainOnce at start).
func (j *Journal) Maintain(ctx context.Context, r Retention, every time.Duration, log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			j.MaintainOnce(ctx, r, log)
		}
	}
}

// MaintainOnce creates the partitions ahead, applies retention, prunes acknowledged reversals
// and compacts a closed day (compact.go).
func (j *Journal) MaintainOnce(ctx context.Context, r Retention, log *slog.Logger) {
	{
		today := time.Now()
		if err := j.CreateAhead(ctx, today, r.Ahead); err != nil && ctx.Err() == nil {
			log.Error("journal: partitions ahead not created; the write path creates its day when missing", "err", err)
		}
		if r.Days > 0 {
			archived, err := j.ApplyRetention(ctx, today, r.Days, r.ArchiveDir)
			for _, a := range archived {
				log.Info("journal: partition detached and archived", "file", a)
			}
			if err != nil && ctx.Err() == nil {
				log.Error("journal: retention", "err", err)
			}
		}
		if _, err := j.Pool.Exec(ctx, "DELETE FROM saf WHERE acked_at < now() - interval '7 days'"); err != nil && ctx.Err() == nil {
			log.Warn("journal: pruning acknowledged reversals", "err", err)
		}
		j.compactClosed(ctx, today, log)
	}
}

// CreateAhead makes sure the partitions of yesterday, today and ahead days after exist.
func (j *Journal) CreateAhead(ctx context.Context, today time.Time, ahead int) error {
	if ahead <= 0 {
		ahead = 3
	}
	for i := -1; i <= ahead; i++ {
		if err := j.parts.ensure(ctx, j, today.AddDate(0, 0, i)); err != nil {
			return err
		}
	}
	return nil
}

// restoredUntil is how a restored partition is marked: retention leaves it until that day.
var restoredUntil = regexp.MustCompile(`keep until (\d{4}-\d{2}-\d{2})`)

// ApplyRetention detaches every partition whose day is more than days before today, writes it
// to archiveDir as txn_YYYY-MM-DD.csv.gz (CSV with a header line, gzip: readable by any tool)
// and drops it once the file is durable; then it does the same with the refund tables' finished
// rows from before that day (archiveRefunds). It returns the files written.
func (j *Journal) ApplyRetention(ctx context.Context, today time.Time, days int, archiveDir string) ([]string, error) {
	y, m, d := today.Date()
	cutoff := time.Date(y, m, d, 0, 0, 0, 0, time.UTC).AddDate(0, 0, -days)
	parts, err := j.Partitions(ctx)
	if err != nil {
		return nil, err
	}
	var files []string
	for _, p := range parts {
		if !p.Day.Before(cutoff) {
			continue
		}
		if m := restoredUntil.FindStringSubmatch(p.Note); m != nil {
			if until, err := time.Parse("2006-01-02", m[1]); err == nil && !time.Now().After(until) {
				continue
			}
		}
		f, err := j.archivePartition(ctx, p, archiveDir)
		if err != nil {
			return files, fmt.Errorf("%s: %w", p.Name, err)
		}
		files = append(files, f)
	}
	// and the refund tables' finished rows from before the cutoff (refundretention.go)
	if err := os.MkdirAll(archiveDir, 0o750); err != nil {
		return files, err
	}
	more, err := j.archiveRefunds(ctx, cutoff, archiveDir)
	return append(files, more...), err
}

func (j *Journal) archivePartition(ctx context.Context, p Partition, dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return "", err
	}
	o, r := OutcomeName(p.Day), ReversalName(p.Day)
	// the rows as the txn view shows them, read from the day's three partitions once they are
	// detached (nothing can change them any more): the view's own definition, on them
	var view string
	if err := j.Pool.QueryRow(ctx, "SELECT pg_get_viewdef('txn'::regclass)").Scan(&view); err != nil {
		return "", err
	}
	merged := strings.NewReplacer("txn_request w", p.Name+" w", "txn_outcome o", o+" o", "txn_reversal r", r+" r").Replace(strings.TrimRight(strings.TrimSpace(view), ";"))
	if !strings.Contains(merged, p.Name+" w") || !strings.Contains(merged, o+" o") || !strings.Contains(merged, r+" r") {
		return "", fmt.Errorf("expected the txn view to read txn_request w, txn_outcome o and txn_reversal r, found %s", view)
	}
	// DETACH … CONCURRENTLY does not block the write path; it cannot run in a transaction. A
	// detach interrupted earlier is finished with FINALIZE.
	for _, d := range []struct{ parent, name string }{{"txn_request", p.Name}, {"txn_outcome", o}, {"txn_reversal", r}} {
		var attached bool
		if err := j.Pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = to_regclass($1) AND inhparent = $2::regclass)", d.name, d.parent).Scan(&attached); err != nil {
			return "", err
		}
		if !attached {
			continue
		}
		if _, err := j.Pool.Exec(ctx, "ALTER TABLE "+d.parent+" DETACH PARTITION "+d.name+" CONCURRENTLY"); err != nil {
			if _, ferr := j.Pool.Exec(ctx, "ALTER TABLE "+d.parent+" DETACH PARTITION "+d.name+" FINALIZE"); ferr != nil {
				return "", fmt.Errorf("detach %s: %v", d.name, err)
			}
		}
	}
	j.parts.forget(p.Day)
	path := filepath.Join(dir, "txn_"+p.Day.Format("2006-01-02")+".csv.gz")
	if _, err := os.Stat(path); err == nil {
		path = filepath.Join(dir, fmt.Sprintf("txn_%s.%d.csv.gz", p.Day.Format("2006-01-02"), time.Now().Unix()))
	}
	// the route of each transaction in words as well (via names a row of issuer_via), so that
	// the file reads on its own and restores into any journal
	if err := j.copyOut(ctx, "SELECT t.*, v.route AS via_route, v.endpoint AS via_endpoint, v.secondary AS via_secondary FROM ("+merged+
		") t LEFT JOIN issuer_via v ON v.id = t.via ORDER BY t.id", path); err != nil {
		return "", err
	}
	if _, err := j.Pool.Exec(ctx, "DROP TABLE "+p.Name+", "+o+", "+r); err != nil {
		return path, fmt.Errorf("archived to %s but not dropped: %v", path, err)
	}
	return path, nil
}

// copyOut writes what query selects as gzip'd CSV with a header, durably (written to a
// temporary file, synced, renamed).
func (j *Journal) copyOut(ctx context.Context, query, path string) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o640)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	zw := gzip.NewWriter(f)
	conn, err := j.Pool.Acquire(ctx)
	if err != nil {
		f.Close()
		return err
	}
	_, err = conn.Conn().PgConn().CopyTo(ctx, zw, "COPY ("+query+") TO STDOUT (FORMAT csv, HEADER)")
	conn.Release()
	if err == nil {
		err = zw.Close()
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// Restore brings an archived partition (a file ApplyRetention wrote) back into the journal as
// its day's partition, marked so that retention leaves it for keep days. It returns the day and
// the number of rows.
func (j *Journal) Restore(ctx context.Context, path string, keep int) (time.Time, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return time.Time{}, 0, err
	}
	defer f.Close()
	zr, err := gzip.NewReader(bufio.NewReader(f))
	if err != nil {
		return time.Time{}, 0, fmt.Errorf("%s: expected a gzip'd CSV archive: %v", path, err)
	}
	header, body, err := readHeader(zr)
	if err != nil {
		return time.Time{}, 0, fmt.Errorf("%s: %v", path, err)
	}
	// column types of the journal as it is now
	types := map[string]string{}
	rows, err := j.Pool.Query(ctx, `SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute
		WHERE attrelid = 'txn_request'::regclass AND attnum > 0 AND NOT attisdropped`)
	if err != nil {
		return time.Time{}, 0, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	for rows.Next() {
		var n, t string
		if err := rows.Scan(&n, &t); err != nil {
			rows.Close()
			return time.Time{}, 0, err
		}
		types[n] = t
	}
	rows.Close()
	var stageCols, common, casts []string
	for _, c := range header {
		if !regexp.MustCompile(`^[a-z_][a-z0-9_]*$`).MatchString(c) {
			return time.Time{}, 0, fmt.Errorf("%s: header column %q is not a column name", path, c)
		}
		stageCols = append(stageCols, c+" text")
		if t, ok := types[c]; ok {
			common = append(common, c)
			casts = append(casts, fmt.Sprintf("%s::%s", c, t))
		}
	}
	// an archive that names its routes gets this journal's ids for them
	named := slices.Contains(header, "via_route") && slices.Contains(header, "via_endpoint") && slices.Contains(header, "via_secondary")
	if i := slices.Index(common, "via"); i >= 0 && named {
		casts[i] = "(SELECT v.id FROM issuer_via v WHERE v.route = via_route AND v.endpoint = coalesce(via_endpoint, '') AND v.secondary = via_secondary::boolean)"
	}
	// a terminal's number is this journal's (txn_term), and dkey is computed: neither is taken
	// from the archive, which may come from another journal or from before migration 0024
	for _, c := range []string{"term", "dkey"} {
		if i := slices.Index(common, c); i >= 0 {
			common, casts = slices.Delete(common, i, i+1), slices.Delete(casts, i, i+1)
		}
	}
	for _, need := range []string{"mid", "tid", "batch", "stan", "mti"} {
		if !slices.Contains(common, need) {
			return time.Time{}, 0, fmt.Errorf("%s: expected a journal archive with column %s, found %s", path, need, strings.Join(header, ","))
		}
	}
	common = append(common, "term", "dkey")
	casts = append(casts, "(SELECT k.no FROM txn_term k WHERE k.mid = txn_restore.mid AND k.tid = txn_restore.tid)", "txn_dkey(batch, stan, mti)")
	for _, need := range []string{"id", "local_day"} {
		if _, ok := types[need]; !ok || !slices.Contains(common, need) {
			return time.Time{}, 0, fmt.Errorf("%s: expected a journal archive with columns id and local_day, found %s", path, strings.Join(header, ","))
		}
	}
	tx, err := j.Pool.Begin(ctx)
	if err != nil {
		return time.Time{}, 0, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(ctx, "CREATE TEMP TABLE txn_restore ("+strings.Join(stageCols, ", ")+") ON COMMIT DROP"); err != nil {
		return time.Time{}, 0, err
	}
	if _, err := tx.Conn().PgConn().CopyFrom(ctx, body, "COPY txn_restore FROM STDIN (FORMAT csv)"); err != nil {
		return time.Time{}, 0, fmt.Errorf("%s: %v", path, err)
	}
	var days int
	var day time.Time
	if err := tx.QueryRow(ctx, "SELECT count(DISTINCT local_day), min(local_day::date) FROM txn_restore").Scan(&days, &day); err != nil || days != 1 {
		return time.Time{}, 0, fmt.Errorf("%s: expected the rows of one day, found %d days (%v)", path, days, err)
	}
	name := PartitionName(day)
	var exists bool
	if err := tx.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", name).Scan(&exists); err != nil {
		return time.Time{}, 0, err
	}
	if exists {
		return time.Time{}, 0, fmt.Errorf("%s: the journal already has a partition for %s (%s)", path, day.Format("2006-01-02"), name)
	}
	stmts := []string{"SET LOCAL lock_timeout = '10s'",
		"INSERT INTO txn_term (mid, tid) SELECT DISTINCT mid, tid FROM txn_restore ORDER BY 1, 2 ON CONFLICT DO NOTHING"}
	if named {
		stmts = append(stmts, `INSERT INTO issuer_via (route, endpoint, secondary) SELECT DISTINCT via_route, coalesce(via_endpoint, ''), via_secondary::boolean
			FROM txn_restore WHERE via_route IS NOT NULL ON CONFLICT DO NOTHING`)
	}
	// the archived rows are the transactions as they stood: they go whole into request rows (no
	// outcome rows), their reversals (if any were still kept) into the day's reversal partition
	bounds := fmt.Sprintf("FOR VALUES FROM ('%s') TO ('%s')", day.Format("2006-01-02"), day.AddDate(0, 0, 1).Format("2006-01-02"))
	o, r := OutcomeName(day), ReversalName(day)
	stmts = append(stmts,
		"CREATE TABLE "+name+" (LIKE txn_request INCLUDING DEFAULTS) WITH (fillfactor = 100)",
		"INSERT INTO "+name+" ("+strings.Join(common, ", ")+") SELECT "+strings.Join(casts, ", ")+" FROM txn_restore",
		"SELECT txn_request_keys('"+name+"')",
		"ALTER TABLE txn_request ATTACH PARTITION "+name+" "+bounds,
		"CREATE TABLE IF NOT EXISTS "+o+" PARTITION OF txn_outcome "+bounds,
		"CREATE TABLE IF NOT EXISTS "+r+" PARTITION OF txn_reversal "+bounds)
	if slices.Contains(header, "reversal") {
		stmts = append(stmts, "INSERT INTO "+r+" (id, local_day, sealed) SELECT id::bigint, local_day::date, reversal::bytea FROM txn_restore WHERE reversal <> ''")
	}
	stmts = append(stmts,
		fmt.Sprintf("COMMENT ON TABLE %s IS 'restored from %s on %s; keep until %s'", name, strings.ReplaceAll(filepath.Base(path), "'", ""),
			time.Now().Format("2006-01-02"), time.Now().AddDate(0, 0, keep).Format("2006-01-02")))
	for _, s := range stmts {
		if _, err := tx.Exec(ctx, s); err != nil {
			return time.Time{}, 0, fmt.Errorf("restore %s: %v", name, err)
		}
	}
	var n int64
	if err := tx.QueryRow(ctx, "SELECT count(*) FROM "+name).Scan(&n); err != nil {
		return time.Time{}, 0, err
	}
	if err := tx.Commit(ctx); err != nil {
		return time.Time{}, 0, err
	}
	return day, n, nil
}

// readHeader reads the CSV header line and returns the column names and a reader of the rest.
func readHeader(r io.Reader) ([]string, io.Reader, error) {
	br := bufio.NewReader(r)
	line, err := br.ReadString('\n')
	if err != nil {
		return nil, nil, errors.New("expected a CSV header line")
	}
	cols, err := csv.NewReader(strings.NewReader(line)).Read()
	if err != nil {
		return nil, nil, fmt.Errorf("header: %v", err)
	}
	return cols, br, nil
}
