package journal

import (
	"context"
	"fmt"
	"sync"
)

// Route is the issuer route a transaction took.
type Route struct {
	Route     string
	Endpoint  string // "" when no endpoint of the route was up
	Secondary bool
}

// vias caches issuer_via: the few (route, endpoint, secondary) combinations a transaction's
// via column names. Its rows never change or go away, so what is cached stays true.
type vias struct {
	mu    sync.Mutex
	ids   map[Route]int16
	names map[int16]Route
}

func (v *vias) put(id int16, r Route) {
	if v.ids == nil {
		v.ids, v.names = map[Route]int16{}, map[int16]Route{}
	}
	v.ids[r], v.names[id] = id, r
}

// ViaID is the issuer_via id of r for Txn.Via and Outcome.Via, added when new (one statement
// per new combination, then cached).
func (j *Journal) ViaID(ctx context.Context, r Route) (int16, error) {
	j.vias.mu.Lock()
	id, ok := j.vias.ids[r]
	j.vias.mu.Unlock()
	if ok {
		return id, nil
	}
	// DO UPDATE (a no-op) so that RETURNING gives the id another node added first
	err := j.Pool.QueryRow(ctx, `INSERT INTO issuer_via (route, endpoint, secondary) VALUES ($1, $2, $3)
		ON CONFLICT (route, endpoint, secondary) DO UPDATE SET route = EXCLUDED.route RETURNING id`, r.Route, r.Endpoint, r.Secondary).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("%w: issuer route %s: %v", ErrUnavailable, r.Route, err)
	}
	j.vias.mu.Lock()
	j.vias.put(id, r)
	j.vias.mu.Unlock()
	return id, nil
}

// Route is the issuer route transaction t took, nil when none is recorded (declined by the
// switch, or journaled before the outcome).
func (j *Journal) Route(ctx context.Context, t *Txn) (*Route, error) {
	if t == nil || t.Via == 0 {
		return nil, nil
	}
	j.vias.mu.Lock()
	r, ok := j.vias.names[t.Via]
	j.vias.mu.Unlock()
	if ok {
		return &r, nil
	}
	if err := j.Pool.QueryRow(ctx, `SELECT route, endpoint, secondary FROM issuer_via WHERE id = $1`, t.Via).Scan(&r.Route, &r.Endpoint, &r.Secondary); err != nil {
		return nil, fmt.Errorf("%w: issuer route %d of transaction %d: %v", ErrUnavailable, t.Via, t.ID, err)
	}
	j.vias.mu.Lock()
	j.vias.put(t.Via, r)
	j.vias.mu.Unlock()
	return &r, nil
}

// RouteOf is the route transaction id took, nil when none is recorded.
func (j *Journal) RouteOf(ctx context.Context, id int64) (*Route, error) {
	t, err := j.ByID(ctx, id)
	if err != nil {
		return nil, err
	}
	return j.Route(ctx, t)
}
