package journal

import (
	"context"
	"fmt"
	"path/filepath"
	"time"
)

// The back office's refund tables grow with refunds, not with days: retention takes out their
// finished rows older than the journal's cutoff, as it takes out the days themselves
// (ApplyRetention). Each table's rows go to archiveDir as <table>_until_<cutoff>_<time>.csv.gz
// (CSV with a header, gzip), written and synced before they are deleted. A stop between the two
// leaves them in the table, and the next round writes them again into a file of its own: an
// archive may repeat rows, it never misses one.
//
//   - bo_refund_event, bo_refund: refunds succeeded, failed or rejected and last changed before
//     the cutoff, with their history; without the sealed advice (card data, of no use once the
//     refund is final).
//   - refund_batch: uploaded batches older than the cutoff that no refund names any more.
//   - refund_clearing: refunds the balance covered (cleared) before the cutoff; pending ones
//     stay whatever their age.
var refundRetention = []struct {
	table, cols, where, order string
}{
	{"bo_refund_event", "*", "refund_id IN (SELECT id FROM bo_refund WHERE state IN ('succeeded', 'failed', 'rejected') AND updated_at < '%[1]s')", "id"},
	{"bo_refund", `id, mid, idem_key, kind, source, batch_id, orig_id, orig_rrn, orig_day, tid, amount, reason, state, applied_by, applied_by_id,
		decided_by, decided_by_id, decided_at, note, rrn, resp_code, rule, why, auth_code, txn_id, accept_day, attempts, last_error, created_at, updated_at`,
		"state IN ('succeeded', 'failed', 'rejected') AND updated_at < '%[1]s'", "id"},
	{"refund_batch", "*", "at < '%[1]s' AND NOT EXISTS (SELECT 1 FROM bo_refund r WHERE r.batch_id = refund_batch.id)", "id"},
	{"refund_clearing", "*", "state = 'cleared' AND cleared_on < '%[1]s'", "txn_id"},
}

// archiveRefunds archives and deletes the refund tables' finished rows from before cutoff; it
// returns the files written.
func (j *Journal) archiveRefunds(ctx context.Context, cutoff time.Time, archiveDir string) ([]string, error) {
	day := cutoff.Format("2006-01-02")
	var files []string
	for _, t := range refundRetention {
		where := fmt.Sprintf(t.where, day)
		var n int64
		if err := j.Pool.QueryRow(ctx, "SELECT count(*) FROM "+t.table+" WHERE "+where).Scan(&n); err != nil {
			return files, fmt.Errorf("%s: %w", t.table, err)
		}
		if n == 0 {
			continue
		}
		path := filepath.Join(archiveDir, fmt.Sprintf("%s_until_%s_%s.csv.gz", t.table, day, time.Now().UTC().Format("20060102T150405.000")))
		if err := j.copyOut(ctx, "SELECT "+t.cols+" FROM "+t.table+" WHERE "+where+" ORDER BY "+t.order, path); err != nil {
			return files, fmt.Errorf("%s: %w", t.table, err)
		}
		files = append(files, path)
		if _, err := j.Pool.Exec(ctx, "DELETE FROM "+t.table+" WHERE "+where); err != nil {
			return files, fmt.Errorf("%s: archived to %s, not yet deleted: %w", t.table, path, err)
		}
	}
	return files, nil
}
