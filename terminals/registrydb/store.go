// Package registrydb keeps the merchant and terminal registry in PostgreSQL (the journal
// database): the one source of truth that every switch node sees. Every change — through this
// API (the console, `shoudan terminals`) or an import of the config file — is validated by the
// same code as the config file (terminals.Spec.Build), written in one transaction with an
// optional audit hook, and committed with a NOTIFY; every node then rebuilds its immutable
// snapshot (Follow). A snapshot is safe to lose: it is rebuilt from the tables at any time.
//
// Terminal master keys are KB1 blocks wrapped under the security module's KEK (or "demo"), and
// stored sealed under the journal key on top; a Spec read from the database carries them sealed
// (TMKSealed) too.
package registrydb

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/shoudan/shoudan/terminals"
)

// Channel is the NOTIFY channel of registry changes; the payload is the new version.
const Channel = "registry"

// editLock serialises writers of the registry (pg_advisory_xact_lock).
const editLock = 85840

var (
	// ErrNotFound: the merchant or terminal an update names is not registered.
	ErrNotFound = errors.New("not registered")
	// ErrExists: a create names a merchant or terminal that is already registered.
	ErrExists = errors.New("already registered")
)

// Keys seals and opens terminal master keys (the journal's Vault).
type Keys interface {
	Seal(plain []byte) []byte
	Open(sealed []byte) ([]byte, error)
}

// Store is the registry in the database.
type Store struct {
	Pool *pgxpool.Pool
	Keys Keys
	// Local, when set, is offered the snapshot of every change this store commits, so that this
	// node decides by it as soon as the change returns (other nodes follow the notification).
	Local *terminals.Holder
	// Audit, when set, runs in the transaction of every change after its rows are written (the
	// console writes its audit_log row there); an error aborts the change.
	Audit func(ctx context.Context, tx pgx.Tx, c *Change) error
}

// New is a store on the journal's pool with the journal's keys.
func New(pool *pgxpool.Pool, keys Keys) *Store { return &Store{Pool: pool, Keys: keys} }

// Change is a committed (or, with Version unchanged, empty) change of the registry.
type Change struct {
	Version     int64 // the registry's version after the change
	Who         string
	At          time.Time
	Differences []terminals.Difference
	Registry    *terminals.Registry // the snapshot after the change
}

// Lines is the change in words, one line per entry changed (never a key).
func (c *Change) Lines() []string { return terminals.Describe(c.Differences) }

// Empty reports a change that changed nothing (nothing was written).
func (c *Change) Empty() bool { return len(c.Differences) == 0 }

type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func (s *Store) open(sealed []byte) ([]byte, error) { return s.Keys.Open(sealed) }

// Load reads the registry and builds its snapshot (validated like a config file: a row edited
// by hand into something invalid is refused with its reason).
func (s *Store) Load(ctx context.Context) (*terminals.Registry, error) {
	tx, err := s.Pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(ctx)
	return s.load(ctx, tx)
}

// Version is the registry's current version (0: never written).
func (s *Store) Version(ctx context.Context) (int64, error) {
	var v int64
	err := s.Pool.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM registry_change").Scan(&v)
	return v, err
}

func (s *Store) load(ctx context.Context, q querier) (*terminals.Registry, error) {
	spec, version, err := readSpec(ctx, q)
	if err != nil {
		return nil, err
	}
	reg, err := spec.Build(s.open)
	if err != nil {
		return nil, fmt.Errorf("registry database (version %d): %w", version, err)
	}
	reg.Version = version
	return reg, nil
}

// readSpec reads the tables into a Spec with every value explicit and the keys sealed.
func readSpec(ctx context.Context, q querier) (*terminals.Spec, int64, error) {
	spec := &terminals.Spec{}
	var version int64
	if err := q.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM registry_change").Scan(&version); err != nil {
		return nil, 0, err
	}
	var cash []string
	var limit int64
	var sdk string
	var window int
	err := q.QueryRow(ctx, "SELECT cash_mccs, qps_limit, min_sdk_version, refund_window_days FROM registry_rules").Scan(&cash, &limit, &sdk, &window)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return nil, 0, err
	default:
		spec.Rules = terminals.RulesSpec{CashMCCs: cash, QPSLimit: terminals.FormatAmount(limit), MinSDK: sdk, RefundWindowDays: &window}
	}
	rows, err := q.Query(ctx, "SELECT mid, name, name_en, mcc, enabled, direct, qps, qps_limit, qps_registered, refund, acquirer, grp FROM merchant ORDER BY mid")
	if err != nil {
		return nil, 0, err
	}
	for rows.Next() {
		var m terminals.MerchantSpec
		var enabled, direct, refund bool
		var lim *int64
		var reg *time.Time
		if err := rows.Scan(&m.MID, &m.Name, &m.NameEN, &m.MCC, &enabled, &direct, &m.QPS, &lim, &reg, &refund, &m.Acquirer, &m.Group); err != nil {
			rows.Close()
			return nil, 0, err
		}
		m.Enabled, m.Direct, m.Refund = terminals.Bool(enabled), terminals.Bool(direct), terminals.Bool(refund)
		if lim != nil {
			m.QPSLimit = terminals.FormatAmount(*lim)
		}
		spec.Merchants = append(spec.Merchants, m)
		if reg != nil {
			spec.Whitelist = append(spec.Whitelist, terminals.WhitelistSpec{MID: m.MID, Date: reg.Format("2006-01-02")})
		}
	}
	if err := rows.Err(); err != nil {
		return nil, 0, err
	}
	rows, err = q.Query(ctx, "SELECT tid, mid, env, serial, tmk_enc, qps, enabled FROM terminal ORDER BY mid, tid")
	if err != nil {
		return nil, 0, err
	}
	for rows.Next() {
		var t terminals.TerminalSpec
		var sealed []byte
		var enabled bool
		if err := rows.Scan(&t.TID, &t.MID, &t.Env, &t.Serial, &sealed, &t.QPS, &enabled); err != nil {
			rows.Close()
			return nil, 0, err
		}
		t.TMKSealed, t.Enabled = hex.EncodeToString(sealed), terminals.Bool(enabled)
		spec.Terminals = append(spec.Terminals, t)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, err
	}
	var l terminals.LoadSpec
	var sealed []byte
	err = q.QueryRow(ctx, "SELECT count, mid, env, tmk_enc, qps FROM terminal_load").Scan(&l.Count, &l.MID, &l.Env, &sealed, &l.QPS)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return nil, 0, err
	default:
		l.TMKSealed = hex.EncodeToString(sealed)
		spec.Load = &l
	}
	return spec, version, nil
}

// Edit changes the registry in one transaction: fn edits a copy of the current spec, the whole
// result is validated like a config file (an invalid one is refused with a *terminals.ConfigError
// naming the entry, the field, what was expected and what was found, and nothing changes), the
// differences are written, the audit hook runs, and the commit notifies every node. An edit that
// changes nothing writes nothing.
func (s *Store) Edit(ctx context.Context, who string, fn func(*terminals.Spec) error) (*Change, error) {
	return s.change(ctx, who, func(_ pgx.Tx, cur *terminals.Registry) (*terminals.Spec, error) {
		spec := cur.Spec()
		if err := fn(spec); err != nil {
			return nil, err
		}
		return spec, nil
	})
}

// Preview is Edit without the write: the change fn would make to the current registry,
// validated the same way, with the registry it would give (what-if replays the journal against
// it). Nothing is locked, written or notified.
func (s *Store) Preview(ctx context.Context, fn func(*terminals.Spec) error) (*Change, error) {
	cur, err := s.load(ctx, s.Pool)
	if err != nil {
		return nil, err
	}
	spec := cur.Spec()
	if err := fn(spec); err != nil {
		return nil, err
	}
	reg, ds, err := s.next(cur, spec)
	if err != nil {
		return nil, err
	}
	return &Change{Version: cur.Version, At: time.Now(), Differences: ds, Registry: reg}, nil
}

// next validates spec as the successor of cur: the registry it builds and what differs.
func (s *Store) next(cur *terminals.Registry, spec *terminals.Spec) (*terminals.Registry, []terminals.Difference, error) {
	s.sealSpec(spec) // the snapshot's spec, like the tables, never holds a key in clear
	reg, err := spec.Build(s.open)
	if err != nil {
		return nil, nil, err
	}
	return reg, terminals.Diff(cur, reg), nil
}

// change runs one registry transaction: next computes the new spec from the current snapshot.
func (s *Store) change(ctx context.Context, who string, next func(pgx.Tx, *terminals.Registry) (*terminals.Spec, error)) (*Change, error) {
	tx, err := s.Pool.Begin(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", editLock); err != nil {
		return nil, err
	}
	cur, err := s.load(ctx, tx)
	if err != nil {
		return nil, err
	}
	spec, err := next(tx, cur)
	if err != nil {
		return nil, err
	}
	reg, ds, err := s.next(cur, spec)
	if err != nil {
		return nil, err
	}
	c := &Change{Version: cur.Version, Who: who, At: time.Now(), Differences: ds, Registry: reg}
	reg.Version = cur.Version
	if c.Empty() {
		return c, tx.Commit(ctx) // commits what next wrote (the import record), if anything
	}
	if err := s.write(ctx, tx, spec, reg, c.Differences); err != nil {
		return nil, err
	}
	if err := tx.QueryRow(ctx, "INSERT INTO registry_change (who, changes) VALUES ($1, $2) RETURNING version, at", who, c.Lines()).Scan(&c.Version, &c.At); err != nil {
		return nil, err
	}
	if s.Audit != nil {
		if err := s.Audit(ctx, tx, c); err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
	}
	if _, err := tx.Exec(ctx, "SELECT pg_notify($1, $2)", Channel, strconv.FormatInt(c.Version, 10)); err != nil {
		return nil, err
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, err
	}
	if s.Local != nil {
		s.Local.Offer(reg)
	}
	return c, nil
}

// write applies the differences to the tables.
// All rows go in one pipelined batch: an import of thousands of terminals is one round trip.
func (s *Store) write(ctx context.Context, tx pgx.Tx, spec *terminals.Spec, reg *terminals.Registry, ds []terminals.Difference) error {
	b := &pgx.Batch{}
	upsertMerchant := map[string]bool{}
	for _, d := range ds {
		if (d.Kind == "merchant" || d.Kind == "qps_whitelist") && reg.Merchant(d.MID) != nil {
			upsertMerchant[d.MID] = true
		}
	}
	// the rules row is written with the first change (until then the defaults apply), and
	// rewritten when the rules change
	conflict := "DO NOTHING"
	if find(ds, "rules") != nil {
		conflict = "DO UPDATE SET cash_mccs=$1, qps_limit=$2, min_sdk_version=$3, refund_window_days=$4"
	}
	r := reg.Rules
	b.Queue(`INSERT INTO registry_rules (cash_mccs, qps_limit, min_sdk_version, refund_window_days) VALUES ($1,$2,$3,$4)
		ON CONFLICT (singleton) `+conflict, r.CashMCCs, r.QPSLimit, r.MinSDK.String(), r.RefundWindowDays)
	for mid := range upsertMerchant {
		m := reg.Merchant(mid)
		var lim *int64
		if m.QPSLimit > 0 {
			lim = &m.QPSLimit
		}
		var day *time.Time
		if !m.QPSRegistered.IsZero() {
			day = &m.QPSRegistered
		}
		b.Queue(`INSERT INTO merchant (mid, name, name_en, mcc, enabled, direct, qps, qps_limit, qps_registered, refund, acquirer, grp)
			VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)
			ON CONFLICT (mid) DO UPDATE SET name=$2, name_en=$3, mcc=$4, enabled=$5, direct=$6, qps=$7, qps_limit=$8, qps_registered=$9,
				refund=$10, acquirer=$11, grp=$12, updated_at=now()`,
			m.MID, m.Name, m.NameEN, m.MCC, m.Enabled, m.Direct, m.QPS, lim, dateOnly(day), m.RefundAllowed, m.Acquirer, m.Group)
	}
	for _, d := range ds {
		if d.Kind == "terminal" && d.Action == "removed" {
			b.Queue("DELETE FROM terminal WHERE mid=$1 AND tid=$2", d.MID, d.TID)
		}
	}
	sealedOf := make(map[string]string, len(spec.Terminals))
	for _, t := range spec.Terminals {
		sealedOf[t.TID+"|"+t.MID] = t.TMKSealed
	}
	for _, d := range ds {
		if d.Kind != "terminal" || d.Action == "removed" {
			continue
		}
		t := reg.Terminal(d.TID, d.MID)
		sealed, err := s.sealedKey(sealedOf[d.TID+"|"+d.MID], t.TMKText())
		if err != nil {
			return err
		}
		b.Queue(`INSERT INTO terminal (mid, tid, env, serial, tmk_enc, qps, enabled) VALUES ($1,$2,$3,$4,$5,$6,$7)
			ON CONFLICT (mid, tid) DO UPDATE SET env=$3, serial=$4, tmk_enc=$5, qps=$6, enabled=$7, updated_at=now()`,
			t.MID, t.TID, string(t.Env), t.Serial, sealed, t.QPS, t.Enabled)
	}
	for _, d := range ds {
		if d.Kind == "merchant" && d.Action == "removed" {
			b.Queue("DELETE FROM merchant WHERE mid=$1", d.MID)
		}
	}
	if d := find(ds, "load_terminals"); d != nil {
		if spec.Load == nil || spec.Load.Count == 0 {
			b.Queue("DELETE FROM terminal_load")
			return tx.SendBatch(ctx, b).Close()
		}
		l, _ := reg.LoadTemplate()
		sealed, err := s.sealedKey(spec.Load.TMKSealed, l.TMKText())
		if err != nil {
			return err
		}
		b.Queue(`INSERT INTO terminal_load (count, mid, env, tmk_enc, qps) VALUES ($1,$2,$3,$4,$5)
			ON CONFLICT (singleton) DO UPDATE SET count=$1, mid=$2, env=$3, tmk_enc=$4, qps=$5`,
			spec.Load.Count, l.MID, string(l.Env), sealed, l.QPS)
	}
	return tx.SendBatch(ctx, b).Close()
}

// sealedKey is the sealed form of a key: as given when it came sealed, else sealed now.
func (s *Store) sealedKey(sealedHex string, text string) ([]byte, error) {
	if sealedHex != "" {
		return hex.DecodeString(sealedHex)
	}
	if text == "" {
		return nil, errors.New("registry: a terminal without a master key")
	}
	return s.Keys.Seal([]byte(text)), nil
}

func dateOnly(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.Format("2006-01-02")
}

func find(ds []terminals.Difference, kind string) *terminals.Difference {
	for i := range ds {
		if ds[i].Kind == kind {
			return &ds[i]
		}
	}
	return nil
}

// sealSpec replaces every clear TMK of a spec with its sealed form (for storing a spec).
func (s *Store) sealSpec(spec *terminals.Spec) {
	for i := range spec.Terminals {
		if t := &spec.Terminals[i]; t.TMK != "" {
			t.TMKSealed, t.TMK = hex.EncodeToString(s.Keys.Seal([]byte(t.TMK))), ""
		}
	}
	if l := spec.Load; l != nil && l.TMK != "" {
		l.TMKSealed, l.TMK = hex.EncodeToString(s.Keys.Seal([]byte(l.TMK))), ""
	}
}

func marshalSpec(spec *terminals.Spec) ([]byte, error) { return json.Marshal(spec) }
