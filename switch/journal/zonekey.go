package journal

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// ZoneKey is a zone PIN key a key change sent to the issuers (table zone_key).
type ZoneKey struct {
	ID       int64
	Index    int    // F53's key index, 1-99
	KCV      string // check value
	Block    string // KB1.ZPK… under the security module's KEK
	UnderZMK []byte // the key wrapped under the zone master key, as the key change carries it
	Base     string // the issuer.zone_key the chain started from (its digest)
	Node     string
	At       time.Time
}

// CurrentZoneKey is the newest zone key of base (ok false when no key change has been made since
// that key was entered).
func (j *Journal) CurrentZoneKey(ctx context.Context, base string) (ZoneKey, bool, error) {
	k := ZoneKey{Base: base}
	err := j.Pool.QueryRow(ctx, `SELECT id, key_index, kcv, block, under_zmk, node, at FROM zone_key WHERE base = $1 ORDER BY id DESC LIMIT 1`, base).
		Scan(&k.ID, &k.Index, &k.KCV, &k.Block, &k.UnderZMK, &k.Node, &k.At)
	if errors.Is(err, pgx.ErrNoRows) {
		return ZoneKey{}, false, nil
	}
	if err != nil {
		return ZoneKey{}, false, fmt.Errorf("zone key: %w", err)
	}
	return k, true, nil
}

// ZoneKeyHistory lists the key changes of base, newest first.
func (j *Journal) ZoneKeyHistory(ctx context.Context, base string, limit int) ([]ZoneKey, error) {
	rows, err := j.Pool.Query(ctx, `SELECT id, key_index, kcv, node, at FROM zone_key WHERE base = $1 ORDER BY id DESC LIMIT $2`, base, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []ZoneKey
	for rows.Next() {
		k := ZoneKey{Base: base}
		if err := rows.Scan(&k.ID, &k.Index, &k.KCV, &k.Node, &k.At); err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// RotateZoneKey runs change (the key exchange with the issuers) with the zone key lock held, so
// that two nodes never send two different keys under one index, and records the key it returns.
// change is given the current key (ok false: none since base) and returns the new one; when it
// fails nothing is recorded.
func (j *Journal) RotateZoneKey(ctx context.Context, base, node string, change func(cur ZoneKey, ok bool) (ZoneKey, error)) (ZoneKey, error) {
	conn, err := j.Pool.Acquire(ctx)
	if err != nil {
		return ZoneKey{}, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	defer conn.Release()
	var got bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", LockZoneKey).Scan(&got); err != nil {
		return ZoneKey{}, err
	}
	if !got {
		return ZoneKey{}, errors.New("zone key: another node is changing the zone PIN key now; try again in a few seconds")
	}
	defer conn.Exec(context.Background(), "SELECT pg_advisory_unlock($1)", LockZoneKey)
	cur, ok, err := j.CurrentZoneKey(ctx, base)
	if err != nil {
		return ZoneKey{}, err
	}
	k, err := change(cur, ok)
	if err != nil {
		return ZoneKey{}, err
	}
	k.Base, k.Node = base, node
	// the issuers hold the key now: record it even if the caller has gone
	wctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = conn.QueryRow(wctx, `INSERT INTO zone_key (key_index, kcv, block, under_zmk, base, node) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id, at`,
		k.Index, k.KCV, k.Block, k.UnderZMK, k.Base, k.Node).Scan(&k.ID, &k.At)
	if err != nil {
		return ZoneKey{}, fmt.Errorf("zone key: the issuers took key index %d (check value %s) but it was not recorded (%v): rotate again", k.Index, k.KCV, err)
	}
	return k, nil
}
