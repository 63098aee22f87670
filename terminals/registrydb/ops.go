package registrydb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/shoudan/shoudan/terminals"
)

// CreateMerchant registers a new merchant; whitelist is its 双免 whitelist registration date
// (YYYY-MM-DD, "" for none).
func (s *Store) CreateMerchant(ctx context.Context, who string, m terminals.MerchantSpec, whitelist string) (*Change, error) {
	return s.Edit(ctx, who, func(spec *terminals.Spec) error {
		if spec.Merchant(m.MID) != nil {
			return fmt.Errorf("merchant %s: %w", m.MID, ErrExists)
		}
		spec.PutMerchant(m)
		spec.SetWhitelist(m.MID, whitelist)
		return nil
	})
}

// UpdateMerchant replaces a merchant's entry (MCC, names, enabled, direct connection, 双免 and
// its limit, refund permission, acquirer) and its whitelist date ("" removes it).
func (s *Store) UpdateMerchant(ctx context.Context, who string, m terminals.MerchantSpec, whitelist string) (*Change, error) {
	return s.Edit(ctx, who, MerchantUpdate(m, whitelist))
}

// MerchantUpdate is UpdateMerchant's edit, for Edit or Preview.
func MerchantUpdate(m terminals.MerchantSpec, whitelist string) func(*terminals.Spec) error {
	return func(spec *terminals.Spec) error {
		if spec.Merchant(m.MID) == nil {
			return fmt.Errorf("merchant %s: %w", m.MID, ErrNotFound)
		}
		spec.PutMerchant(m)
		spec.SetWhitelist(m.MID, whitelist)
		return nil
	}
}

// SetWhitelist sets a merchant's 双免 whitelist registration date ("" removes it).
func (s *Store) SetWhitelist(ctx context.Context, who, mid, day string) (*Change, error) {
	return s.Edit(ctx, who, func(spec *terminals.Spec) error {
		if spec.Merchant(mid) == nil {
			return fmt.Errorf("merchant %s: %w", mid, ErrNotFound)
		}
		spec.SetWhitelist(mid, day)
		return nil
	})
}

// RegisterTerminal registers a new terminal; its TMK is given in clear (hex), stored sealed.
func (s *Store) RegisterTerminal(ctx context.Context, who string, t terminals.TerminalSpec) (*Change, error) {
	return s.Edit(ctx, who, func(spec *terminals.Spec) error {
		if spec.Terminal(t.TID, t.MID) != nil {
			return fmt.Errorf("terminal %s of merchant %s: %w", t.TID, t.MID, ErrExists)
		}
		spec.PutTerminal(t)
		return nil
	})
}

// UpdateTerminal replaces a terminal's entry; with TMK and TMKSealed both empty it keeps its
// master key.
func (s *Store) UpdateTerminal(ctx context.Context, who string, t terminals.TerminalSpec) (*Change, error) {
	return s.EditTerminal(ctx, who, t.TID, t.MID, func(old *terminals.TerminalSpec) {
		if t.TMK == "" && t.TMKSealed == "" {
			t.TMKSealed = old.TMKSealed
		}
		*old = t
	})
}

// SetTerminalEnabled enables or disables a terminal (a disabled one is answered 97).
func (s *Store) SetTerminalEnabled(ctx context.Context, who, tid, mid string, on bool) (*Change, error) {
	return s.EditTerminal(ctx, who, tid, mid, func(t *terminals.TerminalSpec) { t.Enabled = terminals.Bool(on) })
}

// SetTerminalQPS sets a terminal's 双免 flag.
func (s *Store) SetTerminalQPS(ctx context.Context, who, tid, mid string, on bool) (*Change, error) {
	return s.EditTerminal(ctx, who, tid, mid, func(t *terminals.TerminalSpec) { t.QPS = on })
}

// EditTerminal changes one registered terminal.
func (s *Store) EditTerminal(ctx context.Context, who, tid, mid string, fn func(*terminals.TerminalSpec)) (*Change, error) {
	return s.Edit(ctx, who, func(spec *terminals.Spec) error {
		t := spec.Terminal(tid, mid)
		if t == nil {
			return fmt.Errorf("terminal %s of merchant %s: %w", tid, mid, ErrNotFound)
		}
		fn(t)
		return nil
	})
}

// SetRules replaces the operator rules (cash MCCs, no-PIN limit, minimum SDK, refund window);
// empty fields take protocol.md §7's defaults.
func (s *Store) SetRules(ctx context.Context, who string, r terminals.RulesSpec) (*Change, error) {
	return s.Edit(ctx, who, func(spec *terminals.Spec) error { spec.Rules = r; return nil })
}

// Import upserts every entry a spec lists (merchants by MID, terminals by TID and MID, whitelist
// dates, the rules it sets, load_terminals when given) and removes nothing: `shoudan terminals
// import`. Entries are checked together with the registry they join; an error names the import
// file's line when the entry came from one.
func (s *Store) Import(ctx context.Context, who string, in *terminals.Spec) (*Change, error) {
	return s.Edit(ctx, who, func(spec *terminals.Spec) error {
		spec.PutAll(in.Merchants, in.Terminals)
		for _, w := range in.Whitelist {
			spec.SetWhitelist(w.MID, w.Date)
		}
		r := in.Rules
		if r.CashMCCs != nil {
			spec.Rules.CashMCCs = slices.Clone(r.CashMCCs)
		}
		if r.QPSLimit != "" {
			spec.Rules.QPSLimit = r.QPSLimit
		}
		if r.MinSDK != "" {
			spec.Rules.MinSDK = r.MinSDK
		}
		if r.RefundWindowDays != nil {
			spec.Rules.RefundWindowDays = r.RefundWindowDays
		}
		if in.Load != nil {
			spec.Load = in.Load
		}
		return nil
	})
}

const fileSource = "config file"

// ImportFile applies the registry sections of the config file, as a file edit: only what the
// file changed since it was last imported is applied (an entry added, changed or removed in the
// file; a rule whose value changed), so that an edit of qps_limit in the file applies that limit
// and does not undo a merchant changed through the console. The first import of a database
// (nothing imported yet) seeds it with everything the file lists. The file itself has been
// validated (app.Load names its lines); an import that would leave the registry invalid (e.g. a
// terminal for a merchant removed through the console) is refused and nothing changes.
func (s *Store) ImportFile(ctx context.Context, who string, file *terminals.Spec) (*Change, error) {
	fileReg, err := file.Build(s.open)
	if err != nil {
		return nil, err
	}
	return s.change(ctx, who, func(tx pgx.Tx, cur *terminals.Registry) (*terminals.Spec, error) {
		var last *terminals.Registry
		var raw []byte
		err := tx.QueryRow(ctx, "SELECT spec FROM registry_import WHERE source = $1", fileSource).Scan(&raw)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
		case err != nil:
			return nil, err
		default:
			var ls terminals.Spec
			if err := json.Unmarshal(raw, &ls); err != nil {
				return nil, fmt.Errorf("registry_import: %w", err)
			}
			if last, err = ls.Build(s.open); err != nil {
				return nil, fmt.Errorf("registry_import (the file as last imported): %w", err)
			}
		}
		spec := cur.Spec()
		applyFileChanges(spec, file, terminals.Diff(last, fileReg), last == nil)
		stored := file.Clone()
		s.sealSpec(stored)
		js, err := marshalSpec(stored)
		if err != nil {
			return nil, err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO registry_import (source, spec, version) VALUES ($1, $2, $3)
			ON CONFLICT (source) DO UPDATE SET spec=$2, version=$3, at=now()`, fileSource, js, cur.Version); err != nil {
			return nil, err
		}
		return spec, nil
	})
}

// applyFileChanges copies onto spec the entries of file that ds (last import → file) names.
func applyFileChanges(spec, file *terminals.Spec, ds []terminals.Difference, first bool) {
	fileMerchants := make(map[string]terminals.MerchantSpec, len(file.Merchants))
	for _, m := range file.Merchants {
		fileMerchants[m.MID] = m
	}
	fileTerminals := make(map[string]terminals.TerminalSpec, len(file.Terminals))
	for _, t := range file.Terminals {
		fileTerminals[t.TID+"|"+t.MID] = t
	}
	var putM []terminals.MerchantSpec
	var putT []terminals.TerminalSpec
	goneM, goneT := map[string]bool{}, map[string]bool{}
	for _, d := range ds {
		switch d.Kind {
		case "rules":
			if first {
				spec.Rules = file.Rules
				continue
			}
			for _, f := range d.Fields {
				switch f.Field {
				case "cash_mccs":
					spec.Rules.CashMCCs = slices.Clone(file.Rules.CashMCCs)
				case "qps_limit":
					spec.Rules.QPSLimit = file.Rules.QPSLimit
				case "min_sdk_version":
					spec.Rules.MinSDK = file.Rules.MinSDK
				case "refund_window_days":
					spec.Rules.RefundWindowDays = file.Rules.RefundWindowDays
				}
			}
		case "merchant":
			if m, ok := fileMerchants[d.MID]; ok {
				putM = append(putM, m)
			} else {
				goneM[d.MID] = true
			}
		case "qps_whitelist":
			spec.SetWhitelist(d.MID, file.WhitelistDate(d.MID))
		case "terminal":
			if t, ok := fileTerminals[d.TID+"|"+d.MID]; ok {
				putT = append(putT, t)
			} else {
				goneT[d.TID+"|"+d.MID] = true
			}
		case "load_terminals":
			spec.Load = file.Load
		}
	}
	spec.PutAll(putM, putT)
	spec.Merchants = slices.DeleteFunc(spec.Merchants, func(m terminals.MerchantSpec) bool { return goneM[m.MID] })
	spec.Terminals = slices.DeleteFunc(spec.Terminals, func(t terminals.TerminalSpec) bool { return goneT[t.TID+"|"+t.MID] })
}

// Export is the registry as a spec for YAML (Spec.ReplaceSections): every value explicit,
// master keys sealed under the journal key (tmk_sealed), so that the file holds no key in clear
// and imports back into any node of the same deployment.
func (s *Store) Export(ctx context.Context) (*terminals.Spec, int64, error) {
	reg, err := s.Load(ctx)
	if err != nil {
		return nil, 0, err
	}
	return reg.Spec(), reg.Version, nil
}

// Record is one entry of the registry's change history.
type Record struct {
	Version int64
	At      time.Time
	Who     string
	Changes []string
}

// History lists the newest changes first.
func (s *Store) History(ctx context.Context, limit int) ([]Record, error) {
	rows, err := s.Pool.Query(ctx, "SELECT version, at, who, changes FROM registry_change ORDER BY version DESC LIMIT $1", limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Record, error) {
		var x Record
		err := r.Scan(&x.Version, &x.At, &x.Who, &x.Changes)
		return x, err
	})
}

// version is a notification's registry version (0 when unreadable: rebuild anyway).
func version(n *pgconn.Notification) int64 {
	v, _ := strconv.ParseInt(n.Payload, 10, 64)
	return v
}

// Follow keeps h at the database's registry until ctx ends: it LISTENs for changes and
// rebuilds the snapshot after each (several notifications arriving together cost one rebuild),
// and after every (re)connection, since notifications sent while it was away are lost. A
// snapshot that does not build (a row edited by hand into something invalid, a key that does
// not open) is reported and the current one keeps serving. applied (optional) learns each
// outcome.
func (s *Store) Follow(ctx context.Context, h *terminals.Holder, log *slog.Logger, applied func(*terminals.Registry, error)) {
	report := func(reg *terminals.Registry, err error) {
		if err != nil {
			log.Error("registry change not applied: the previous registry keeps serving", "err", err.Error())
		} else if h.Offer(reg) {
			log.Debug("registry applied", "version", reg.Version)
		}
		if applied != nil {
			applied(reg, err)
		}
	}
	for ctx.Err() == nil {
		conn, err := pgx.ConnectConfig(ctx, s.Pool.Config().ConnConfig.Copy())
		if err == nil {
			if _, err = conn.Exec(ctx, "LISTEN "+Channel); err == nil {
				report(s.Load(ctx))
				for ctx.Err() == nil {
					var n *pgconn.Notification
					if n, err = conn.WaitForNotification(ctx); err != nil {
						break
					}
					newest := version(n)
					for { // drain what arrived meanwhile: one rebuild for all of it
						dctx, cancel := context.WithTimeout(ctx, 2*time.Millisecond)
						n, err := conn.WaitForNotification(dctx)
						cancel()
						if err != nil {
							break
						}
						newest = max(newest, version(n))
					}
					// a change this node made itself is already applied (Store.Local)
					if ctx.Err() == nil && (newest == 0 || newest > h.Get().Version) {
						report(s.Load(ctx))
					}
				}
			}
			conn.Close(context.Background())
		}
		if ctx.Err() == nil && err != nil {
			log.Warn("registry: LISTEN connection lost; retrying in 1 s", "err", err.Error())
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}
