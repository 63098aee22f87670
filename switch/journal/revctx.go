package journal

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// revContexts caches reversal_context (migration 0025): the fields every prepared reversal
// of a merchant through a route repeats, by id. Rows never change or go away.
type revContexts struct {
	mu  sync.Mutex
	ids map[string]int32
	by  map[int32][]byte
}

func (c *revContexts) put(id int32, fields []byte) {
	if c.ids == nil {
		c.ids, c.by = map[string]int32{}, map[int32][]byte{}
	}
	c.ids[string(fields)], c.by[id] = id, fields
}

// ReversalContextID is the id of fields in reversal_context, added when new (one statement per
// new combination, then cached).
func (j *Journal) ReversalContextID(ctx context.Context, fields []byte) (int32, error) {
	j.revctx.mu.Lock()
	id, ok := j.revctx.ids[string(fields)]
	j.revctx.mu.Unlock()
	if ok {
		return id, nil
	}
	if j.Pool == nil {
		return 0, errors.New("reversal context: no database")
	}
	// DO UPDATE (a no-op) so that RETURNING gives the id another node added first
	err := j.Pool.QueryRow(ctx, `INSERT INTO reversal_context (fields) VALUES ($1)
		ON CONFLICT (fields) DO UPDATE SET fields = EXCLUDED.fields RETURNING id`, fields).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("%w: reversal context: %v", ErrUnavailable, err)
	}
	j.revctx.mu.Lock()
	j.revctx.put(id, append([]byte(nil), fields...))
	j.revctx.mu.Unlock()
	return id, nil
}

// ReversalContext is the fields of reversal_context row id.
func (j *Journal) ReversalContext(ctx context.Context, id int32) ([]byte, error) {
	j.revctx.mu.Lock()
	f, ok := j.revctx.by[id]
	j.revctx.mu.Unlock()
	if ok {
		return f, nil
	}
	if j.Pool == nil {
		return nil, errors.New("reversal context: no database")
	}
	if err := j.Pool.QueryRow(ctx, `SELECT fields FROM reversal_context WHERE id = $1`, id).Scan(&f); err != nil {
		return nil, fmt.Errorf("%w: reversal context %d: %v", ErrUnavailable, id, err)
	}
	j.revctx.mu.Lock()
	j.revctx.put(id, f)
	j.revctx.mu.Unlock()
	return f, nil
}
