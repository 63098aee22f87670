package journal

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// floor keeps a lower bound of the ids of this node's transactions that may still be pending
// (state P) in the journal, so that crash recovery reads txn from that id on (a primary-key
// range) instead of needing an index on state, which would make every outcome update non-HOT.
//
// The bound is the smallest of:
//   - the id of every pending row this node wrote and has not finished successfully (a failed
//     outcome commit keeps its id here: recovery must find that row);
//   - for every write-ahead insert still on its way, 1 + the largest id known when it started
//     (ids come from a sequence, so the new row's id is larger);
//   - 1 + the largest id known.
//
// It is written to journal_floor every few seconds; recovery takes the smallest floor of all
// nodes (0 when none is recorded: a full scan).
type floor struct {
	mu        sync.Mutex
	pending   map[int64]struct{}
	inserting map[*Txn]int64 // insert in progress → largest id known when it started
	maxID     int64
}

func (f *floor) startInsert(t *Txn) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.inserting == nil {
		f.inserting, f.pending = map[*Txn]int64{}, map[int64]struct{}{}
	}
	// ids carry their day: a row of an earlier day (a business clock set back) gets an id below
	// every id of later days
	f.inserting[t] = min(f.maxID, dayBase(t.LocalDay)-1)
}

func (f *floor) endInsert(t *Txn, inserted bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.inserting, t)
	if inserted {
		f.pending[t.ID] = struct{}{}
		f.maxID = max(f.maxID, t.ID)
	}
}

// known raises the largest id known (the journal's, when the switch starts).
func (f *floor) known(id int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.maxID = max(f.maxID, id)
}

func (f *floor) finished(id int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.pending, id)
}

func (f *floor) value() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	low := f.maxID + 1
	for id := range f.pending {
		low = min(low, id)
	}
	for _, known := range f.inserting {
		low = min(low, known+1)
	}
	return low
}

// keepFloor writes the floor every interval until ctx ends, and once more at the end.
func (j *Journal) keepFloor(ctx context.Context, node string, every time.Duration) {
	write := func(c context.Context) {
		_, _ = j.Pool.Exec(c, `INSERT INTO journal_floor (node, floor) VALUES ($1, $2)
			ON CONFLICT (node) DO UPDATE SET floor = $2, at = now()`, node, j.floor.value())
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			c, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			write(c)
			cancel()
			return
		case <-t.C:
			write(ctx)
		}
	}
}

// RecoveryFloor is the smallest id any node's pending transactions can have (0: unknown).
func (j *Journal) RecoveryFloor(ctx context.Context) (int64, error) {
	var low *int64
	if err := j.Pool.QueryRow(ctx, "SELECT min(floor) FROM journal_floor").Scan(&low); err != nil {
		return 0, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if low == nil {
		return 0, nil
	}
	return *low, nil
}

// ForgetStaleFloors deletes the floors of nodes that have not written theirs for longer than
// olderThan (a running node writes it every few seconds). Call it only after a recovery from
// RecoveryFloor finished: their pending rows were handled by it. Otherwise a node that stopped
// for good would pin every later recovery to the ids of its last day, a scan that grows with the
// journal's history.
func (j *Journal) ForgetStaleFloors(ctx context.Context, olderThan time.Duration) (int64, error) {
	tag, err := j.Pool.Exec(ctx, "DELETE FROM journal_floor WHERE at < now() - $1::interval", fmt.Sprintf("%d milliseconds", olderThan.Milliseconds()))
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return tag.RowsAffected(), nil
}
