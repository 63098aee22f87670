package journal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// CompactAfterDays: a day is compacted once it is this many days old. Yesterday still takes
// reversals of its last transactions, outcomes finishing after midnight and the day's batch
// settlements; the day before is closed but for late refunds (which add a few entries).
const CompactAfterDays = 2

// DB is what compaction needs of a connection: a pool or a single connection (the bench's).
type DB interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// ErrNoPartition: the day asked for has no partitions (never written, or archived).
var ErrNoPartition = errors.New("no such day in the journal")

// Compacted is a day compacted: its three partitions' bytes before and after.
type Compacted struct {
	Day           time.Time
	Before, After int64
}

// CompactDay rebuilds the indexes of a day's request and outcome partitions (REINDEX
// CONCURRENTLY: writes to the day go on; an index a crash left half built is dropped first) and
// vacuums its reversal partition, then records the day in txn_compacted. It can be run again
// on a day already done (it does the work again).
func CompactDay(ctx context.Context, db DB, d time.Time) (Compacted, error) {
	c := Compacted{Day: d}
	req, out, rev := PartitionName(d), OutcomeName(d), ReversalName(d)
	size := func() (int64, error) {
		var n int64
		err := db.QueryRow(ctx, `SELECT coalesce(pg_total_relation_size(to_regclass($1)), 0) + coalesce(pg_total_relation_size(to_regclass($2)), 0)
			+ coalesce(pg_total_relation_size(to_regclass($3)), 0)`, req, out, rev).Scan(&n)
		return n, err
	}
	var exists bool
	if err := db.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL AND to_regclass($2) IS NOT NULL AND to_regclass($3) IS NOT NULL", req, out, rev).Scan(&exists); err != nil {
		return c, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if !exists {
		return c, fmt.Errorf("%w: compact %s: expected the partitions %s, %s and %s, found them missing", ErrNoPartition, d.Format("2006-01-02"), req, out, rev)
	}
	var err error
	if c.Before, err = size(); err != nil {
		return c, err
	}
	for _, t := range []string{req, out} {
		// an interrupted REINDEX CONCURRENTLY leaves an invalid index (…_ccnew) behind: drop it,
		// or this rebuild would carry it along
		rows, err := db.Query(ctx, "SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = $1::regclass AND NOT indisvalid", t)
		if err != nil {
			return c, err
		}
		invalid, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return c, err
		}
		for _, ix := range invalid {
			if _, err := db.Exec(ctx, "DROP INDEX CONCURRENTLY IF EXISTS "+pgx.Identifier{ix}.Sanitize()); err != nil {
				return c, fmt.Errorf("compact %s: dropping the half-built index %s: %v", t, ix, err)
			}
		}
		if _, err := db.Exec(ctx, "REINDEX TABLE CONCURRENTLY "+pgx.Identifier{t}.Sanitize()); err != nil {
			return c, fmt.Errorf("compact %s: %v", t, err)
		}
	}
	if _, err := db.Exec(ctx, "VACUUM (ANALYZE) "+pgx.Identifier{rev}.Sanitize()); err != nil {
		return c, fmt.Errorf("compact %s: %v", rev, err)
	}
	if c.After, err = size(); err != nil {
		return c, err
	}
	_, err = db.Exec(ctx, `INSERT INTO txn_compacted (day, bytes_before, bytes_after) VALUES ($1, $2, $3)
		ON CONFLICT (day) DO UPDATE SET at = now(), bytes_before = excluded.bytes_before, bytes_after = excluded.bytes_after`, d.Format("2006-01-02"), c.Before, c.After)
	return c, err
}

// CompactClosed compacts the newest closed day not compacted yet (CompactAfterDays old or
// older): one day per upkeep round, so a journal upgraded with a year of days catches up
// without an hour of index builds at once. It returns the day done, or nil when none was due.
func (j *Journal) CompactClosed(ctx context.Context, today time.Time) (*Compacted, error) {
	y, m, d := today.Date()
	last := time.Date(y, m, d, 0, 0, 0, 0, time.UTC).AddDate(0, 0, -CompactAfterDays)
	parts, err := j.Partitions(ctx)
	if err != nil {
		return nil, err
	}
	for i := len(parts) - 1; i >= 0; i-- {
		p := parts[i]
		// a day compacted while it was still open (by hand) has grown half-full pages since: it
		// is done only by a compaction after it closed
		done := !p.Compacted.IsZero() && !p.Compacted.Before(p.Day.AddDate(0, 0, CompactAfterDays))
		if p.Day.After(last) || done || restoredUntil.MatchString(p.Note) {
			continue // open, done, or brought back for an investigation (it goes again)
		}
		c, err := CompactDay(ctx, j.Pool, p.Day)
		return &c, err
	}
	return nil, nil
}

func (j *Journal) compactClosed(ctx context.Context, today time.Time, log *slog.Logger) {
	c, err := j.CompactClosed(ctx, today)
	switch {
	case err != nil && ctx.Err() == nil:
		log.Warn("journal: compacting a closed day", "err", err)
	case c != nil && err == nil:
		log.Info("journal: closed day compacted", "day", c.Day.Format("2006-01-02"), "bytes_before", c.Before, "bytes_after", c.After)
	}
}
