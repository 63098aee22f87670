package journal

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// Reject is a request that failed a check up to and including the MAC (protocol.md §7 rows 1-4):
// answered, logged and counted, but it changed no state. Everything in it but Source, Env and the
// decision is what the (unauthenticated) frame claimed. Masked data only.
type Reject struct {
	ID        int64
	At        time.Time
	Env       string
	Source    string
	Kind, MTI string
	MID, TID  string
	Batch     string
	STAN      string
	Amount    int64
	PANMasked string
	Code      string
	Rule      string
	Reason    string
	FrameLen  int
	FrameHash []byte
}

// RejectLimits bound the rejects table: rows older than MaxAge, and all but the newest MaxRows,
// are pruned as the switch writes.
type RejectLimits struct {
	MaxRows int64
	MaxAge  time.Duration
}

// DefaultRejectLimits keep a month, at most 100,000 rows.
var DefaultRejectLimits = RejectLimits{MaxRows: 100_000, MaxAge: 30 * 24 * time.Hour}

// rejectLog writes rejects off the transaction path: Record never blocks and never waits for a
// commit, so a flood of forged frames costs the genuine terminals neither latency nor journal
// commits. What does not fit the queue is counted and dropped (the log line and the metrics
// still have it).
type rejectLog struct {
	q       chan *Reject
	done    chan struct{}
	dropped atomic.Int64
	written atomic.Int64
	limits  atomic.Pointer[RejectLimits]
}

const rejectQueue = 4096

func (j *Journal) startRejects() {
	r := &j.rejects
	r.q = make(chan *Reject, rejectQueue)
	r.done = make(chan struct{})
	l := DefaultRejectLimits
	r.limits.Store(&l)
	go func() {
		defer close(r.done)
		j.writeRejects(j.ctx)
	}()
}

// SetRejectLimits changes the bounds of the rejects table (zero fields keep the default).
func (j *Journal) SetRejectLimits(l RejectLimits) {
	if l.MaxRows <= 0 {
		l.MaxRows = DefaultRejectLimits.MaxRows
	}
	if l.MaxAge <= 0 {
		l.MaxAge = DefaultRejectLimits.MaxAge
	}
	j.rejects.limits.Store(&l)
}

// RecordReject queues a reject for the rejects table; false when the queue is full (dropped).
func (j *Journal) RecordReject(r *Reject) bool {
	if r.At.IsZero() {
		r.At = time.Now()
	}
	select {
	case j.rejects.q <- r:
		return true
	default:
		j.rejects.dropped.Add(1)
		return false
	}
}

// RejectsDropped is how many rejects did not fit the queue since start.
func (j *Journal) RejectsDropped() int64 { return j.rejects.dropped.Load() }

// RejectsWritten is how many rejects were written since start.
func (j *Journal) RejectsWritten() int64 { return j.rejects.written.Load() }

func (j *Journal) writeRejects(ctx context.Context) {
	r := &j.rejects
	var since int64 // rows written since the last prune
	lastPrune := time.Time{}
	batch := make([]*Reject, 0, 256)
	flush := func() {
		if len(batch) == 0 {
			return
		}
		wctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		n, err := j.Pool.CopyFrom(wctx, pgx.Identifier{"rejects"},
			[]string{"at", "env", "source", "kind", "mti", "mid", "tid", "batch", "stan", "amount", "pan_masked", "code", "rule", "reason", "frame_len", "frame_hash"},
			pgx.CopyFromSlice(len(batch), func(i int) ([]any, error) {
				x := batch[i]
				return []any{x.At, x.Env, x.Source, x.Kind, x.MTI, x.MID, x.TID, x.Batch, x.STAN, x.Amount, x.PANMasked, x.Code, x.Rule, x.Reason, x.FrameLen, x.FrameHash}, nil
			}))
		cancel()
		if err != nil {
			r.dropped.Add(int64(len(batch)))
		} else {
			r.written.Add(n)
			since += n
		}
		batch = batch[:0]
		l := r.limits.Load()
		if since > 0 && (since >= l.MaxRows/10 || time.Since(lastPrune) > time.Minute) {
			if j.pruneRejects(*l) == nil {
				since, lastPrune = 0, time.Now()
			}
		}
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case x := <-r.q:
			batch = append(batch, x)
			if len(batch) == cap(batch) {
				flush()
			}
		case <-tick.C:
			flush()
		case <-ctx.Done():
			for {
				select {
				case x := <-r.q:
					batch = append(batch, x)
				default:
					flush()
					return
				}
			}
		}
	}
}

func (j *Journal) pruneRejects(l RejectLimits) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := j.Pool.Exec(ctx, `DELETE FROM rejects WHERE at < now() - $1::interval
		OR id <= (SELECT max(id) FROM rejects) - $2`, l.MaxAge.String(), l.MaxRows)
	return err
}

// RejectFilter selects rejects for listing (newest first).
type RejectFilter struct {
	TID, MID, Source string
	Since            time.Time
	Limit            int
}

// Rejects lists rejects matching f, newest first.
func (j *Journal) Rejects(ctx context.Context, f RejectFilter) ([]*Reject, error) {
	q := `SELECT id, at, env, source, kind, mti, mid, tid, batch, stan, amount, pan_masked, code, rule, reason, frame_len, frame_hash
		FROM rejects WHERE true`
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		q += fmt.Sprintf(" AND "+cond, len(args))
	}
	if f.TID != "" {
		add("tid = $%d", f.TID)
	}
	if f.MID != "" {
		add("mid = $%d", f.MID)
	}
	if f.Source != "" {
		add("source LIKE $%d || '%%'", f.Source)
	}
	if !f.Since.IsZero() {
		add("at >= $%d", f.Since)
	}
	q += " ORDER BY id DESC"
	if f.Limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	rows, err := j.Pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	defer rows.Close()
	var out []*Reject
	for rows.Next() {
		var x Reject
		if err := rows.Scan(&x.ID, &x.At, &x.Env, &x.Source, &x.Kind, &x.MTI, &x.MID, &x.TID, &x.Batch, &x.STAN, &x.Amount, &x.PANMasked,
			&x.Code, &x.Rule, &x.Reason, &x.FrameLen, &x.FrameHash); err != nil {
			return nil, err
		}
		out = append(out, &x)
	}
	return out, rows.Err()
}
