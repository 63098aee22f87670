package settlement

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Hold is frozen funds: a risk hold on a merchant balance.
type Hold struct {
	ID            int64
	MID           string
	Amount        int64
	Reason, By    string
	At            time.Time
	ReleasedBy    string
	ReleasedAt    *time.Time
	ReleaseReason string
}

// Balance is a merchant's balance as the console and `shoudan settle balance` show it.
type Balance struct {
	MID            string
	Balance        int64 // settled, not yet paid out or taken by refunds
	Frozen         int64
	Available      int64 // Balance - Frozen: what refunds and pay-outs may use
	PendingRefunds []PendingRefund
	Holds          []Hold // active holds
}

// PendingRefund is a refund waiting for clearing.
type PendingRefund struct {
	TxnID      int64
	RRN        string
	Amount     int64
	At         time.Time
	SettleDate time.Time
}

// Freeze puts a risk hold of amount fen on a merchant's balance. The hold may exceed what the
// balance holds now: it then holds back later takings too, until released.
func (s *Settler) Freeze(ctx context.Context, mid string, amount int64, reason, operator string) (*Hold, error) {
	if amount <= 0 {
		return nil, fmt.Errorf("freeze: expected a positive amount, found %d fen", amount)
	}
	if strings.TrimSpace(reason) == "" || strings.TrimSpace(operator) == "" {
		return nil, errors.New("freeze: a reason and the acquirer operator's name are required")
	}
	h := &Hold{MID: mid, Amount: amount, Reason: reason, By: operator}
	err := pgx.BeginFunc(ctx, s.DB, func(tx pgx.Tx) error {
		a, err := lockAccount(ctx, tx, mid)
		if err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, "INSERT INTO fund_hold (mid, amount, reason, created_by) VALUES ($1,$2,$3,$4) RETURNING id, created_at",
			mid, amount, reason, operator).Scan(&h.ID, &h.At); err != nil {
			return err
		}
		a.frozen += amount
		a.entry("freeze", amount, fmt.Sprintf("hold %d: %s (%s)", h.ID, reason, operator))
		return a.save(ctx, nil)
	})
	if err != nil {
		return nil, err
	}
	s.log().Info("funds frozen", "mid", mid, "hold", h.ID, "amount", amount, "reason", reason, "operator", operator)
	return h, nil
}

// Release ends a hold (an acquirer operator's decision). Funds it held are at once used for
// pending refunds, oldest first, and for pay-outs already due.
func (s *Settler) Release(ctx context.Context, holdID int64, reason, operator string) (*Hold, error) {
	if strings.TrimSpace(operator) == "" {
		return nil, errors.New("release: the acquirer operator's name is required")
	}
	h := &Hold{ID: holdID}
	err := pgx.BeginFunc(ctx, s.DB, func(tx pgx.Tx) error {
		var released *time.Time
		if err := tx.QueryRow(ctx, "SELECT mid, amount, reason, created_by, created_at, released_at FROM fund_hold WHERE id = $1", holdID).
			Scan(&h.MID, &h.Amount, &h.Reason, &h.By, &h.At, &released); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				return fmt.Errorf("release: no hold %d", holdID)
			}
			return err
		}
		a, err := lockAccount(ctx, tx, h.MID)
		if err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, "UPDATE fund_hold SET released_by = $2, released_at = now(), release_reason = $3 WHERE id = $1 AND released_at IS NULL",
			holdID, operator, reason)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 || released != nil {
			return fmt.Errorf("release: hold %d was already released", holdID)
		}
		a.frozen -= h.Amount
		a.entry("release", -h.Amount, fmt.Sprintf("hold %d released: %s (%s)", holdID, reason, operator))
		l := s.now().In(s.Config.Cutoff.Loc)
		today := time.Date(l.Year(), l.Month(), l.Day(), 0, 0, 0, 0, time.UTC)
		var last *time.Time
		if err := tx.QueryRow(ctx, "SELECT max(settle_date) FROM settle_day WHERE state = 'closed'").Scan(&last); err != nil {
			return err
		}
		by := fmt.Sprintf("release:%d", holdID)
		a.clearRefunds(today, by)
		if last != nil {
			a.pay(dateOnly(*last).AddDate(0, 0, 1), floorAt(s.Config.Calendar, today, false), by)
		}
		h.ReleasedBy, h.ReleaseReason = operator, reason
		return a.save(ctx, nil)
	})
	if err != nil {
		return nil, err
	}
	s.log().Info("hold released", "mid", h.MID, "hold", holdID, "amount", h.Amount, "operator", operator)
	return h, nil
}

// BalanceOf reads a merchant's balance, pending refunds and active holds.
func (s *Settler) BalanceOf(ctx context.Context, mid string) (*Balance, error) {
	b := &Balance{MID: mid}
	err := s.DB.QueryRow(ctx, "SELECT balance, frozen FROM merchant_account WHERE mid = $1", mid).Scan(&b.Balance, &b.Frozen)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return nil, err
	}
	b.Available = b.Balance - b.Frozen
	rows, err := s.DB.Query(ctx, "SELECT txn_id, rrn, amount, at, settle_date FROM refund_clearing WHERE mid = $1 AND state = 'pending' ORDER BY at, txn_id", mid)
	if err != nil {
		return nil, err
	}
	if b.PendingRefunds, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (PendingRefund, error) {
		var p PendingRefund
		return p, r.Scan(&p.TxnID, &p.RRN, &p.Amount, &p.At, &p.SettleDate)
	}); err != nil {
		return nil, err
	}
	b.Holds, err = s.Holds(ctx, mid, true)
	return b, err
}

// Holds lists a merchant's holds ("" = every merchant), active ones only or all.
func (s *Settler) Holds(ctx context.Context, mid string, activeOnly bool) ([]Hold, error) {
	rows, err := s.DB.Query(ctx, `SELECT id, mid, amount, reason, created_by, created_at, coalesce(released_by, ''), released_at, coalesce(release_reason, '')
		FROM fund_hold WHERE ($1 = '' OR mid = $1) AND (NOT $2 OR released_at IS NULL) ORDER BY id`, mid, activeOnly)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Hold, error) {
		var h Hold
		return h, r.Scan(&h.ID, &h.MID, &h.Amount, &h.Reason, &h.By, &h.At, &h.ReleasedBy, &h.ReleasedAt, &h.ReleaseReason)
	})
}

// Payout is one pay-out instruction.
type Payout struct {
	MID                   string
	CreditDate, ValueDate time.Time
	Amount                int64
	MadeBy                string
}

// Payouts lists pay-outs of a merchant ("" = all) with value dates in [from, to].
func (s *Settler) Payouts(ctx context.Context, mid string, from, to time.Time) ([]Payout, error) {
	rows, err := s.DB.Query(ctx, `SELECT mid, credit_date, value_date, amount, made_by FROM payout
		WHERE ($1 = '' OR mid = $1) AND value_date BETWEEN $2 AND $3 ORDER BY value_date, mid, credit_date, id`, mid, dateOnly(from), dateOnly(to))
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Payout, error) {
		var p Payout
		return p, r.Scan(&p.MID, &p.CreditDate, &p.ValueDate, &p.Amount, &p.MadeBy)
	})
}
