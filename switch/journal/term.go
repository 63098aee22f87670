package journal

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/jackc/pgx/v5"
)

// A terminal's request rows carry its number (txn_term, migration 0024) and their duplicate
// key as one number (DupKey): the indexes a terminal's rows are found by hold an int4 and an
// int8, not its MID and TID as text.

// terms caches txn_term: (MID, TID) → number. Numbers are never changed or reused, so what is
// cached stays true; only terminals that have journaled are numbered.
type terms struct {
	mu  sync.Mutex
	nos map[[2]string]int32
}

func (c *terms) get(mid, tid string) (int32, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	no, ok := c.nos[[2]string{mid, tid}]
	return no, ok
}

func (c *terms) put(mid, tid string, no int32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.nos == nil {
		c.nos = map[[2]string]int32{}
	}
	c.nos[[2]string{mid, tid}] = no
}

// TermNo is the terminal's number, given it when new (one statement per new terminal, then
// cached).
func (j *Journal) TermNo(ctx context.Context, mid, tid string) (int32, error) {
	if no, ok := j.terms.get(mid, tid); ok {
		return no, nil
	}
	var no int32
	// DO UPDATE (a no-op) so that RETURNING gives the number another node gave first
	err := j.Pool.QueryRow(ctx, `INSERT INTO txn_term (mid, tid) VALUES ($1, $2)
		ON CONFLICT (mid, tid) DO UPDATE SET mid = EXCLUDED.mid RETURNING no`, mid, tid).Scan(&no)
	if err != nil {
		return 0, fmt.Errorf("%w: number of terminal %s/%s: %v", ErrUnavailable, mid, tid, err)
	}
	j.terms.put(mid, tid, no)
	return no, nil
}

// knownTerm is the terminal's number, false when it has never journaled (it has no rows).
func (j *Journal) knownTerm(ctx context.Context, mid, tid string) (int32, bool, error) {
	if no, ok := j.terms.get(mid, tid); ok {
		return no, true, nil
	}
	var no int32
	err := j.Pool.QueryRow(ctx, `SELECT no FROM txn_term WHERE mid = $1 AND tid = $2`, mid, tid).Scan(&no)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("%w: number of terminal %s/%s: %v", ErrUnavailable, mid, tid, err)
	}
	j.terms.put(mid, tid, no)
	return no, true, nil
}

// DupKey is batch, STAN and MTI as one number, batch * 10^10 + STAN * 10^4 + MTI (the SQL
// function txn_dkey): false unless they are 6, 6 and 4 digits. Such a row keeps its duplicate
// key on the text columns.
func DupKey(batch, stan, mti string) (int64, bool) {
	b, ok1 := digits(batch, 6)
	s, ok2 := digits(stan, 6)
	m, ok3 := digits(mti, 4)
	if !ok1 || !ok2 || !ok3 {
		return 0, false
	}
	return b*1e10 + s*1e4 + m, true
}

// batchKeys are the DupKey range of a terminal batch.
func batchKeys(batch string) (lo, hi int64, ok bool) {
	b, ok := digits(batch, 6)
	return b * 1e10, b*1e10 + 1e10 - 1, ok
}

// stanKeys are the DupKey range of a batch and STAN (any MTI).
func stanKeys(batch, stan string) (lo, hi int64, ok bool) {
	k, ok := DupKey(batch, stan, "0000")
	return k, k + 9999, ok
}

func digits(s string, n int) (int64, bool) {
	if len(s) != n {
		return 0, false
	}
	var v int64
	for i := 0; i < n; i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int64(c-'0')
	}
	return v, true
}

func nullKey(k int64, ok bool) any {
	if !ok {
		return nil
	}
	return k
}
