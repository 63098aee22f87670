package journal

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
)

// Route is the issuer route a transaction took.
type Route struct {
	Route     string
	Endpoint  string // "" when no endpoint of the route was up
	Secondary bool
}

// RouteOp queues the record of the route a transaction took (with its outcome).
func RouteOp(id int64, r Route) func(*pgx.Batch) {
	return func(b *pgx.Batch) {
		b.Queue(`INSERT INTO txn_route (txn_id, route, endpoint, secondary) VALUES ($1, $2, $3, $4)
			ON CONFLICT (txn_id) DO UPDATE SET route=EXCLUDED.route, endpoint=EXCLUDED.endpoint, secondary=EXCLUDED.secondary, at=now()`,
			id, r.Route, r.Endpoint, r.Secondary)
	}
}

// RouteOf is the route transaction id took, nil when none is recorded.
func (j *Journal) RouteOf(ctx context.Context, id int64) (*Route, error) {
	var r Route
	err := j.Pool.QueryRow(ctx, `SELECT route, endpoint, secondary FROM txn_route WHERE txn_id=$1`, id).Scan(&r.Route, &r.Endpoint, &r.Secondary)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &r, nil
}
