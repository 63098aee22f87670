package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/shoudan/shoudan/switch/journal"
	"github.com/spf13/cobra"
)

// journalCmd: the journal's daily partitions, retention and restore of archived days.
func journalCmd(cfgPath *string) *cobra.Command {
	c := &cobra.Command{Use: "journal", Short: "The journal's daily partitions: list, compact, apply retention now, restore an archived day"}
	c.AddCommand(&cobra.Command{
		Use:   "partitions",
		Short: "List the journal's daily partitions (rows are estimates)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withJournal(cmd.Context(), *cfgPath, func(j *journal.Journal) error {
				ps, err := j.Partitions(cmd.Context())
				if err != nil {
					return err
				}
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "partition\tday\trows\tMB\tcompacted\tnote")
				for _, p := range ps {
					compacted := "-"
					if !p.Compacted.IsZero() {
						compacted = p.Compacted.Local().Format("2006-01-02 15:04")
					}
					fmt.Fprintf(tw, "%s\t%s\t%d\t%.1f\t%s\t%s\n", p.Name, p.Day.Format("2006-01-02"), max(p.Rows, 0), float64(p.Bytes)/(1<<20), compacted, p.Note)
				}
				return tw.Flush()
			})
		},
	})
	var compactDay string
	compact := &cobra.Command{
		Use:   "compact",
		Short: "Rebuild a day's indexes now (the switch does the newest closed day each hour, 2 days after it)",
		Long: `Rebuild the indexes of a day's request and outcome partitions (REINDEX CONCURRENTLY: the
switch goes on writing) and vacuum its reversal partition. Without --day, the newest closed day
not compacted yet, as the hourly upkeep would. Days being written to can be compacted too; they
grow half-full index pages again as they take rows.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withJournal(cmd.Context(), *cfgPath, func(j *journal.Journal) error {
				var c *journal.Compacted
				if compactDay == "" {
					var err error
					if c, err = j.CompactClosed(cmd.Context(), time.Now()); err != nil {
						return err
					}
					if c == nil {
						fmt.Fprintf(cmd.OutOrStdout(), "no closed day left to compact (a day is compacted %d days after it)\n", journal.CompactAfterDays)
						return nil
					}
				} else {
					d, err := time.Parse("2006-01-02", compactDay)
					if err != nil {
						return fmt.Errorf("--day: expected YYYY-MM-DD, found %q", compactDay)
					}
					done, err := journal.CompactDay(cmd.Context(), j.Pool, d)
					if err != nil {
						return err
					}
					c = &done
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s compacted: %.1f MB -> %.1f MB\n", c.Day.Format("2006-01-02"), float64(c.Before)/(1<<20), float64(c.After)/(1<<20))
				return nil
			})
		},
	}
	compact.Flags().StringVar(&compactDay, "day", "", "the day to compact, YYYY-MM-DD (default: the newest closed day not done)")
	c.AddCommand(compact)
	var days int
	ret := &cobra.Command{
		Use:   "retention",
		Short: "Detach and archive the partitions older than journal.retention_days now (the switch does it hourly)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, _, err := loadConfig(*cfgPath)
			if err != nil {
				return err
			}
			if days == 0 {
				days = c.Journal.RetentionDays
			}
			dir, _ := filepath.Abs(filepath.Join(c.DataDir, "archive"))
			return withJournal(cmd.Context(), *cfgPath, func(j *journal.Journal) error {
				files, err := j.ApplyRetention(cmd.Context(), time.Now(), days, dir)
				for _, f := range files {
					fmt.Fprintf(cmd.OutOrStdout(), "archived %s\n", f)
				}
				if err == nil && len(files) == 0 {
					fmt.Fprintf(cmd.OutOrStdout(), "nothing older than %d days\n", days)
				}
				return err
			})
		},
	}
	ret.Flags().IntVar(&days, "days", 0, "keep this many days (default: journal.retention_days)")
	c.AddCommand(ret)
	var keep int
	restore := &cobra.Command{
		Use:   "restore FILE",
		Short: "Bring an archived day (data_dir/archive/txn_YYYY-MM-DD.csv.gz) back into the journal for an investigation",
		Long: `Loads the archive into a new partition of its day and attaches it: explain, txn, the console and
refunds see its transactions again. Retention leaves it for --keep days, then archives it again.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withJournal(cmd.Context(), *cfgPath, func(j *journal.Journal) error {
				day, n, err := j.Restore(cmd.Context(), args[0], keep)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "restored %d transactions of %s into %s (kept for %d days)\n", n, day.Format("2006-01-02"), journal.PartitionName(day), keep)
				return nil
			})
		},
	}
	restore.Flags().IntVar(&keep, "keep", 7, "days before retention archives it again")
	c.AddCommand(restore)
	return c
}

// doctorCmd reports the database settings and journal statistics that will hurt a switch,
// with why and what to set. Exit 1 when something is bad (not merely worth a look).
func doctorCmd(cfgPath *string) *cobra.Command {
	return &cobra.Command{
		Use:   "doctor",
		Short: "Check the journal's PostgreSQL (private or database.url) for settings and statistics that will hurt",
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, _, err := loadConfig(*cfgPath)
			if err != nil {
				return err
			}
			var bad int
			err = withJournal(cmd.Context(), *cfgPath, func(j *journal.Journal) error {
				fmt.Fprintf(cmd.OutOrStdout(), "journal: %s\n", describeDB(c.Database.URL))
				bad, err = doctor(cmd.Context(), j.Pool, c.Journal.RetentionDays, cmd.OutOrStdout())
				return err
			})
			if err != nil {
				return err
			}
			if bad > 0 {
				return fmt.Errorf("%d setting(s) put the journal at risk (marked BAD)", bad)
			}
			return nil
		},
	}
}

func describeDB(url string) string {
	if url == "" {
		return "the private PostgreSQL under data_dir (its settings are sized by shoudan; see the README)"
	}
	return "database.url (an external server: its settings are yours)"
}

type finding struct{ level, what, value, why string }

func doctor(ctx context.Context, pool *pgxpool.Pool, retention int, w io.Writer) (int, error) {
	set := map[string]string{}
	unit := map[string]string{}
	rows, err := pool.Query(ctx, "SELECT name, setting, coalesce(unit, '') FROM pg_settings")
	if err != nil {
		return 0, err
	}
	for rows.Next() {
		var n, v, u string
		if err := rows.Scan(&n, &v, &u); err != nil {
			rows.Close()
			return 0, err
		}
		set[n], unit[n] = v, u
	}
	rows.Close()
	bytes := func(name string) int64 { // a setting in bytes
		n, _ := strconv.ParseInt(set[name], 10, 64)
		switch unit[name] {
		case "8kB":
			return n * 8192
		case "kB":
			return n << 10
		case "MB":
			return n << 20
		}
		return n
	}
	seconds := func(name string) int64 {
		n, _ := strconv.ParseInt(set[name], 10, 64)
		switch unit[name] {
		case "ms":
			return n / 1000
		case "min":
			return n * 60
		}
		return n
	}
	var fs []finding
	add := func(level, what, value, why string) { fs = append(fs, finding{level, what, value, why}) }
	check := func(ok bool, level, what, value, why string) {
		if ok {
			add("ok", what, value, "")
		} else {
			add(level, what, value, why)
		}
	}
	check(set["fsync"] == "on", "BAD", "fsync", set["fsync"], "off loses committed transactions (approvals) on a crash: set fsync = on")
	check(set["synchronous_commit"] != "off", "BAD", "synchronous_commit", set["synchronous_commit"],
		"off acknowledges commits before they are durable: an approval can vanish in a crash; set on (group commit already shares flushes)")
	check(set["full_page_writes"] == "on", "BAD", "full_page_writes", set["full_page_writes"], "off risks torn pages after a crash: set on")
	check(set["autovacuum"] == "on" && set["track_counts"] == "on", "BAD", "autovacuum", set["autovacuum"]+" (track_counts "+set["track_counts"]+")",
		"without it dead tuples of the outcome updates grow without bound and the partitions are never frozen")
	check(bytes("shared_buffers") >= 512<<20, "WARN", "shared_buffers", fmt.Sprintf("%d MB", bytes("shared_buffers")>>20),
		"below 512 MB the journal's indexes do not stay in memory and backends write dirty buffers themselves; a quarter of memory is usual")
	check(bytes("max_wal_size") >= 2<<30, "WARN", "max_wal_size", fmt.Sprintf("%d MB", bytes("max_wal_size")>>20),
		"checkpoints forced by WAL volume stall commits (at 5,000/s 1 GB is about a minute): 4 GB or more")
	check(seconds("checkpoint_timeout") >= 600, "WARN", "checkpoint_timeout", fmt.Sprintf("%d s", seconds("checkpoint_timeout")),
		"each checkpoint makes the next change of every page write a full page image (WAL per transaction): 10-15 min")
	check(set["wal_compression"] != "off", "WARN", "wal_compression", set["wal_compression"], "full page images are most of the journal's WAL: lz4 (or on)")
	check(seconds("autovacuum_naptime") <= 30, "WARN", "autovacuum_naptime", fmt.Sprintf("%d s", seconds("autovacuum_naptime")),
		"today's partition takes thousands of updates a second: look at least every 30 s (10 s is shoudan's)")
	limit, _ := strconv.Atoi(set["autovacuum_vacuum_cost_limit"])
	if limit == -1 {
		limit, _ = strconv.Atoi(set["vacuum_cost_limit"])
	}
	check(limit >= 1000, "WARN", "autovacuum_vacuum_cost_limit", strconv.Itoa(limit), "the default 200 lets vacuum fall behind a busy day: 1000-2000")
	locks, _ := strconv.Atoi(set["max_locks_per_transaction"])
	conns, _ := strconv.Atoi(set["max_connections"])
	need := (retention + 5) * 5 // a query over every partition locks it and its indexes
	check(locks >= need/4 && locks*conns >= need*4, "WARN", "max_locks_per_transaction", fmt.Sprintf("%d × %d connections", locks, conns),
		fmt.Sprintf("queries over every daily partition (%d days kept) lock about %d relations: 256 or more", retention, need))

	// statistics that show trouble
	var backend, all int64
	var timed, req int64
	if err := pool.QueryRow(ctx, `SELECT buffers_backend, buffers_backend + buffers_clean + buffers_checkpoint, checkpoints_timed, checkpoints_req FROM pg_stat_bgwriter`).
		Scan(&backend, &all, &timed, &req); err == nil && all > 10000 {
		check(float64(backend) < 0.3*float64(all), "WARN", "buffers written by backends", fmt.Sprintf("%.0f%%", 100*float64(backend)/float64(all)),
			"backends evict dirty buffers themselves (commit latency): more shared_buffers, a more active bgwriter")
		check(req <= timed, "WARN", "checkpoints requested (by WAL volume)", fmt.Sprintf("%d of %d", req, req+timed), "raise max_wal_size")
	}
	var dead, live, upd int64
	if err := pool.QueryRow(ctx, `SELECT coalesce(sum(n_dead_tup), 0), coalesce(sum(n_live_tup), 0), coalesce(sum(n_tup_upd) FILTER (WHERE relname LIKE 'txn_p%'), 0)
		FROM pg_stat_user_tables WHERE relname ~ '^txn_[por][0-9]{8}$'`).Scan(&dead, &live, &upd); err == nil {
		if live+dead > 10000 {
			check(float64(dead) < 0.2*float64(live+dead), "WARN", "dead tuples in txn", fmt.Sprintf("%d of %d", dead, live+dead), "vacuum is behind: see autovacuum above, long transactions")
		}
		// the request rows are insert-only (migration 0021): an update of one writes a new version
		// and an entry in each of its indexes
		check(upd < 1000, "WARN", "updates of txn request rows", fmt.Sprintf("%d", upd), "txn_request is insert-only: something outside the switch updates it")
	}
	var oldest float64
	if err := pool.QueryRow(ctx, `SELECT coalesce(extract(epoch FROM max(now() - xact_start)), 0) FROM pg_stat_activity WHERE state <> 'idle' AND backend_type = 'client backend'`).
		Scan(&oldest); err == nil {
		check(oldest < 600, "WARN", "oldest open transaction", fmt.Sprintf("%.0f s", oldest), "a long transaction keeps vacuum from removing any dead tuple newer than it")
	}
	// each day's duplicate key is its request partition's own index (migration 0024): a partition
	// made some other way than txn_ensure_partition or restore has none, and would journal a
	// retransmitted request twice
	var keyless []string
	if err := pool.QueryRow(ctx, `SELECT coalesce(array_agg(c.relname::text ORDER BY c.relname), '{}') FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
		WHERE i.inhparent = 'txn_request'::regclass AND NOT EXISTS (SELECT 1 FROM pg_index x JOIN pg_class k ON k.oid = x.indexrelid
			WHERE x.indrelid = c.oid AND x.indisunique AND x.indisvalid AND k.relname = c.relname || '_key')`).Scan(&keyless); err == nil {
		check(len(keyless) == 0, "BAD", "request partitions without their duplicate key", strings.Join(keyless, " "),
			"SELECT txn_request_keys('<partition>') creates it (after removing any duplicates it finds)")
	}
	var ahead bool
	if err := pool.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", journal.PartitionName(time.Now().AddDate(0, 0, 1))).Scan(&ahead); err == nil {
		check(ahead, "WARN", "tomorrow's partition", journal.PartitionName(time.Now().AddDate(0, 0, 1)), "not created yet: a running switch creates 3 days ahead every hour")
	}

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	bad := 0
	for _, f := range fs {
		if f.level == "BAD" {
			bad++
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", strings.ToUpper(f.level), f.what, f.value, f.why)
	}
	return bad, tw.Flush()
}
