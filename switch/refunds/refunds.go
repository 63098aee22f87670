// Package refunds is the back office's refunds and voids (issue 16): requested in the console,
// by a batch file or through the merchant API; decided by the terminal's own acquirer checks
// (posswitch.CheckBackOffice, protocol.md §7 rows 6-20); in review mode an application a
// reviewer other than the applicant approves or rejects; once accepted, an upstream advice sealed
// in the journal and forwarded until the issuer answers it (never lost, never applied twice:
// the issuer recognises a repeat by the refund's RRN); the outcome journaled in txn like a
// terminal's; and the merchant's systems notified of every final state.
//
// One idempotency key per request and merchant (a console form's token, the API's
// out_refund_no, a batch row's content) makes a double click, a retried form or a re-uploaded
// file one refund.
package refunds

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	rc "github.com/shoudan/shoudan/responsecodes"
	"github.com/shoudan/shoudan/spec/money"
	"github.com/shoudan/shoudan/spec/pos"
	posswitch "github.com/shoudan/shoudan/switch"
	"github.com/shoudan/shoudan/switch/journal"
)

// States of a refund. PendingClearing is not stored: it is a succeeded refund that the
// settlement (switch/settlement, refund_clearing) has not yet covered from the balance.
const (
	Applied         = "applied"
	Approved        = "approved"
	Rejected        = "rejected"
	Sent            = "sent"
	Succeeded       = "succeeded"
	Failed          = "failed"
	PendingClearing = "pending clearing"
)

// Sources of a request.
const (
	FromConsole = "console"
	FromAPI     = "api"
	FromBatch   = "batch"
)

var (
	// ErrIdempotency: the idempotency key was used for a different request.
	ErrIdempotency = errors.New("the idempotency key was already used for a different refund")
	// ErrOwnApplication: a reviewer may not decide their own application.
	ErrOwnApplication = errors.New("a reviewer cannot approve or reject their own application")
	// ErrNotApplied: the refund is not an application waiting for a decision.
	ErrNotApplied = errors.New("the refund is not waiting for review")
	// ErrNotFound: no such refund of this merchant.
	ErrNotFound = errors.New("no such refund")
	// ErrTOTP: the dynamic password is missing, wrong, or already used.
	ErrTOTP = errors.New("dynamic password (TOTP) required: the code from your enrolled authenticator is missing, wrong or already used")
)

// Service is the back office's refunds.
type Service struct {
	Switch  *posswitch.Switch
	Journal *journal.Journal
	Log     *slog.Logger
	// Lease reserves a claimed advice for its sender (longer than an issuer round trip).
	Lease time.Duration
	// MaxBackoff bounds the wait between deliveries of an advice.
	MaxBackoff time.Duration
	// Notify shapes notifications to merchant systems.
	Notify NotifyConfig
	kick   chan struct{}
	nkick  chan struct{}
}

// New is a service on a running switch.
func New(sw *posswitch.Switch, log *slog.Logger) *Service {
	return &Service{Switch: sw, Journal: sw.Journal, Log: log, Lease: 10 * time.Second, MaxBackoff: 30 * time.Second,
		Notify: DefaultNotify(), kick: make(chan struct{}, 1), nkick: make(chan struct{}, 1)}
}

func (s *Service) pool() *pgxpool.Pool { return s.Journal.Pool }
func (s *Service) now() time.Time      { return s.Switch.Now() }

// Actor is who asks: a console user, or a merchant API key.
type Actor struct {
	Name   string // login, or "api:<key id>"
	UserID int64  // console user id (0 for the API)
}

// Request is a refund or void to make.
type Request struct {
	MID     string
	Kind    string    // "refund" (default) or "void"
	OrigRRN string    // the original purchase's RRN (F37)
	OrigDay time.Time // its local day
	Amount  int64     // fen; a void's is the original's
	Reason  string
	IdemKey string // unique per merchant and request
	Source  string
	BatchID int64
	By      Actor
	// TOTP is the operator's dynamic password, when the merchant requires one (console only).
	TOTP string
	// Direct skips review mode (the merchant API: the merchant's own system asks).
	Direct bool
	// totpDone: the dynamic password was checked once for the whole batch.
	totpDone bool
}

// Refund is a refund as the back office shows it.
type Refund struct {
	ID               int64     `json:"refund_id"`
	MID              string    `json:"merchant_id"`
	IdemKey          string    `json:"out_refund_no"`
	Kind             string    `json:"kind"`
	Source           string    `json:"source"`
	State            string    `json:"state"`
	OrigID           int64     `json:"-"`
	OrigRRN          string    `json:"original_rrn"`
	OrigDay          time.Time `json:"-"`
	TID              string    `json:"terminal_id"`
	Amount           int64     `json:"amount_fen"`
	Reason           string    `json:"reason"`
	AppliedBy        string    `json:"applied_by"`
	AppliedByID      int64     `json:"-"`
	DecidedBy        string    `json:"decided_by,omitempty"`
	Note             string    `json:"note,omitempty"`
	RRN              string    `json:"rrn,omitempty"`
	Code             string    `json:"code,omitempty"`
	Rule             string    `json:"rule,omitempty"`
	Why              string    `json:"message,omitempty"`
	AuthCode         string    `json:"auth_code,omitempty"`
	TxnID            int64     `json:"-"`
	Attempts         int       `json:"-"`
	LastError        string    `json:"-"`
	Created, Updated time.Time `json:"-"`
	ClearingPending  bool      `json:"-"`
	BatchID          int64     `json:"-"`
	OrigDayString    string    `json:"original_date"`
	AmountString     string    `json:"amount"`
	CreatedString    string    `json:"created_at"`
	UpdatedString    string    `json:"updated_at"`
	Final            bool      `json:"final"`
	stored           bool
}

// Shown is the state as a user sees it: a succeeded refund waiting for the settlement to cover
// it from the merchant's balance is "pending clearing".
func (r *Refund) Shown() string {
	if r.State == Succeeded && r.ClearingPending {
		return PendingClearing
	}
	return r.State
}

func (r *Refund) fill() {
	r.OrigDayString = r.OrigDay.Format("2006-01-02")
	r.AmountString = money.Format(r.Amount)
	r.CreatedString = r.Created.UTC().Format(time.RFC3339)
	r.UpdatedString = r.Updated.UTC().Format(time.RFC3339)
	r.Final = r.State == Succeeded || r.State == Failed || r.State == Rejected
	r.State = r.Shown()
}

// Event is one step of a refund's history.
type Event struct {
	At    time.Time
	State string
	Who   string
	Note  string
}

const refundColumns = `r.id, r.mid, r.idem_key, r.kind, r.source, r.state, r.orig_id, r.orig_rrn, r.orig_day, r.tid, r.amount, r.reason,
	r.applied_by, coalesce(r.applied_by_id, 0), r.decided_by, r.note, r.rrn, r.resp_code, r.rule, r.why, r.auth_code, coalesce(r.txn_id, 0),
	r.attempts, r.last_error, r.created_at, r.updated_at, coalesce(rc.state = 'pending', false), coalesce(r.batch_id, 0)`

const refundFrom = ` FROM bo_refund r LEFT JOIN refund_clearing rc ON rc.txn_id = r.txn_id `

func scanRefund(row pgx.Row) (*Refund, error) {
	var r Refund
	err := row.Scan(&r.ID, &r.MID, &r.IdemKey, &r.Kind, &r.Source, &r.State, &r.OrigID, &r.OrigRRN, &r.OrigDay, &r.TID, &r.Amount, &r.Reason,
		&r.AppliedBy, &r.AppliedByID, &r.DecidedBy, &r.Note, &r.RRN, &r.Code, &r.Rule, &r.Why, &r.AuthCode, &r.TxnID,
		&r.Attempts, &r.LastError, &r.Created, &r.Updated, &r.ClearingPending, &r.BatchID)
	if err != nil {
		return nil, err
	}
	r.stored = true
	r.fill()
	return &r, nil
}

func (s *Service) one(ctx context.Context, where string, args ...any) (*Refund, error) {
	r, err := scanRefund(s.pool().QueryRow(ctx, "SELECT "+refundColumns+refundFrom+"WHERE "+where, args...))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	return r, err
}

// Get is a refund of merchant mid ("" = any merchant: acquirer staff).
func (s *Service) Get(ctx context.Context, mid string, id int64) (*Refund, error) {
	return s.one(ctx, "r.id = $1 AND ($2 = '' OR r.mid = $2)", id, mid)
}

// ByKey is a refund by its idempotency key (the API's out_refund_no).
func (s *Service) ByKey(ctx context.Context, mid, key string) (*Refund, error) {
	return s.one(ctx, "r.mid = $1 AND r.idem_key = $2", mid, key)
}

// Filter selects refunds for the application list.
type Filter struct {
	MID    string // "" = all merchants
	State  string // "" = any; "pending clearing" too
	OrigID int64
	Limit  int
}

// List is the application list, newest first.
func (s *Service) List(ctx context.Context, f Filter) ([]*Refund, error) {
	q := "SELECT " + refundColumns + refundFrom + "WHERE ($1 = '' OR r.mid = $1) AND ($2::bigint = 0 OR r.orig_id = $2)"
	args := []any{f.MID, f.OrigID}
	switch f.State {
	case "":
	case PendingClearing:
		q += " AND r.state = 'succeeded' AND rc.state = 'pending'"
	case Succeeded:
		q += " AND r.state = 'succeeded' AND coalesce(rc.state, '') <> 'pending'"
	default:
		args = append(args, f.State)
		q += " AND r.state = $3"
	}
	if f.Limit <= 0 || f.Limit > 1000 {
		f.Limit = 200
	}
	q += fmt.Sprintf(" ORDER BY r.id DESC LIMIT %d", f.Limit)
	rows, err := s.pool().Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*Refund
	for rows.Next() {
		r, err := scanRefund(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// History is a refund's events, oldest first.
func (s *Service) History(ctx context.Context, id int64) ([]Event, error) {
	rows, err := s.pool().Query(ctx, "SELECT at, state, who, note FROM bo_refund_event WHERE refund_id = $1 ORDER BY id", id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Event
	for rows.Next() {
		var e Event
		if err := rows.Scan(&e.At, &e.State, &e.Who, &e.Note); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// Original finds the purchase a request refers to (merchant, RRN, local day).
func (s *Service) Original(ctx context.Context, mid, rrn string, day time.Time) (*journal.Txn, error) {
	return s.Journal.ForRefund(ctx, mid, rrn, day)
}

func kindOf(name string) *pos.Kind {
	if name == "void" {
		return pos.Void
	}
	return pos.Refund
}

// Request makes a refund or void: refused (State failed, with the rule, code and reason) when an
// acquirer check declines; an application in review mode; otherwise accepted and sent. The same
// idempotency key returns the refund it made before (ErrIdempotency if the request differs).
func (s *Service) Request(ctx context.Context, q Request) (*Refund, error) {
	if q.Kind == "" {
		q.Kind = "refund"
	}
	if q.Kind != "refund" && q.Kind != "void" {
		return nil, fmt.Errorf("kind: expected refund or void, found %q", q.Kind)
	}
	if q.IdemKey == "" || len(q.IdemKey) > 64 {
		return nil, fmt.Errorf("idempotency key: expected 1-64 characters, found %d", len(q.IdemKey))
	}
	if len(q.Reason) > 200 {
		return nil, fmt.Errorf("reason: at most 200 characters, found %d", len(q.Reason))
	}
	if prev, err := s.ByKey(ctx, q.MID, q.IdemKey); err == nil {
		return prev, s.sameRequest(prev, q)
	} else if !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	set, err := s.Settings(ctx, q.MID)
	if err != nil {
		return nil, err
	}
	if set.TOTPRequired && q.Source != FromAPI && !q.totpDone {
		if err := s.VerifyTOTP(ctx, q.By.UserID, q.TOTP); err != nil {
			return nil, err
		}
	}
	kind := kindOf(q.Kind)
	orig, err := s.Original(ctx, q.MID, q.OrigRRN, q.OrigDay)
	if err != nil {
		return nil, err
	}
	r := &Refund{MID: q.MID, IdemKey: q.IdemKey, Kind: q.Kind, Source: q.Source, OrigRRN: q.OrigRRN, OrigDay: q.OrigDay,
		Amount: q.Amount, Reason: q.Reason, AppliedBy: q.By.Name, AppliedByID: q.By.UserID, BatchID: q.BatchID}
	if orig == nil {
		// nothing to refer to: the same words as rule 19, not stored (no original, no terminal)
		r.State, r.Code, r.Rule = Failed, rc.NoOriginal, "refund-original"
		r.Why = fmt.Sprintf("no purchase with RRN %s on %s", q.OrigRRN, q.OrigDay.Format("2006-01-02"))
		r.fill()
		return r, nil
	}
	if kind == pos.Void {
		if q.Amount != 0 && q.Amount != orig.Amount {
			r.Amount = q.Amount // checked by rule 17: a void is for the full amount
		} else {
			r.Amount = orig.Amount
		}
	}
	if r.Amount <= 0 {
		return nil, fmt.Errorf("amount: expected more than 0.00, found %s", money.Format(r.Amount))
	}
	r.OrigID, r.TID = orig.ID, orig.TID
	now := s.now()
	dec := s.Switch.CheckBackOffice(ctx, kind, orig, r.Amount, now)
	if dec.Decision.Code != "" {
		return s.refuse(ctx, r, orig, dec, now)
	}
	if set.Review && !q.Direct {
		return s.apply(ctx, r)
	}
	return s.accept(ctx, r, orig, dec, now, nil)
}

// sameRequest: a repeated key must carry the same request.
func (s *Service) sameRequest(prev *Refund, q Request) error {
	same := prev.Kind == q.Kind && prev.OrigRRN == q.OrigRRN && prev.OrigDay.Format("2006-01-02") == q.OrigDay.Format("2006-01-02") &&
		(prev.Amount == q.Amount || (q.Kind == "void" && q.Amount == 0))
	if !same {
		return fmt.Errorf("%w (refund %d: %s of %s for RRN %s)", ErrIdempotency, prev.ID, prev.Kind, money.Format(prev.Amount), prev.OrigRRN)
	}
	return nil
}

// insert writes a new refund row in state (one transaction with what follows in tx); it
// reports false when the idempotency key was taken meanwhile (a concurrent double click).
func insertRefund(ctx context.Context, tx pgx.Tx, r *Refund, state string) (bool, error) {
	err := tx.QueryRow(ctx, `INSERT INTO bo_refund (mid, idem_key, kind, source, batch_id, orig_id, orig_rrn, orig_day, tid, amount, reason,
		state, applied_by, applied_by_id, resp_code, rule, why)
		VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17)
		ON CONFLICT (mid, idem_key) DO NOTHING RETURNING id, created_at`,
		r.MID, r.IdemKey, r.Kind, r.Source, nullID(r.BatchID), r.OrigID, r.OrigRRN, r.OrigDay, r.TID, r.Amount, r.Reason,
		state, r.AppliedBy, nullID(r.AppliedByID), r.Code, r.Rule, r.Why).Scan(&r.ID, &r.Created)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

func nullID(id int64) any {
	if id == 0 {
		return nil
	}
	return id
}

func event(ctx context.Context, tx pgx.Tx, id int64, state, who, note string) error {
	_, err := tx.Exec(ctx, "INSERT INTO bo_refund_event (refund_id, state, who, note) VALUES ($1,$2,$3,$4)", id, state, who, note)
	return err
}

// inTx runs f in one transaction.
func (s *Service) inTx(ctx context.Context, f func(pgx.Tx) error) error {
	tx, err := s.pool().Begin(ctx)
	if err != nil {
		return fmt.Errorf("%w: %v", journal.ErrUnavailable, err)
	}
	defer tx.Rollback(ctx)
	if err := f(tx); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// errTaken unwinds a transaction whose idempotency key a concurrent request took.
var errTaken = errors.New("idempotency key taken meanwhile")

// afterTaken returns the refund a concurrent request with the same key made.
func (s *Service) afterTaken(ctx context.Context, r *Refund, err error) (*Refund, error) {
	if !errors.Is(err, errTaken) {
		return nil, err
	}
	prev, err := s.ByKey(ctx, r.MID, r.IdemKey)
	if err != nil {
		return nil, err
	}
	return prev, nil
}

// refuse records a request an acquirer check declined: the refund (failed, with the rule, code
// and reason) and, like a terminal's decline, a journal row.
func (s *Service) refuse(ctx context.Context, r *Refund, orig *journal.Txn, dec posswitch.BackOffice, now time.Time) (*Refund, error) {
	r.State, r.Code, r.Rule, r.Why = Failed, dec.Decision.Code, dec.Decision.Rule, dec.Decision.Reason
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		ok, err := insertRefund(ctx, tx, r, Failed)
		if err != nil {
			return err
		}
		if !ok {
			return errTaken
		}
		if _, err := tx.Exec(ctx, "UPDATE bo_refund SET accept_day = $2 WHERE id = $1", r.ID, dayOf(now)); err != nil {
			return err
		}
		return event(ctx, tx, r.ID, Failed, r.AppliedBy, fmt.Sprintf("refused by %s (%s): %s", r.Rule, r.Code, r.Why))
	})
	if err != nil {
		return s.afterTaken(ctx, r, err)
	}
	rec := s.journalRow(r, orig, kindOf(r.Kind), dayOf(now), now)
	rec.State, rec.RespCode, rec.Rule, rec.Reason, rec.Trace = journal.Declined, r.Code, r.Rule, r.Why, strings.Join(dec.Passed, ",")
	if _, err := s.Journal.Insert(ctx, rec, func(b *pgx.Batch) {
		b.Queue(`UPDATE bo_refund SET txn_id = (SELECT id FROM txn_request WHERE local_day=$2 AND term = (SELECT no FROM txn_term WHERE mid=$3 AND tid=$4)
			AND dkey = txn_dkey($5, $6, $7) AND mid=$3 AND tid=$4) WHERE id = $1`,
			r.ID, rec.LocalDay, rec.MID, rec.TID, rec.Batch, rec.STAN, rec.MTI)
	}); err != nil {
		s.Log.Warn("back-office refund refusal not journaled in txn", "refund", r.ID, "err", err)
	}
	s.audit(ctx, r, "refund_refused", fmt.Sprintf("%s %s of RRN %s: %s (%s)", r.Kind, money.Format(r.Amount), r.OrigRRN, r.Why, r.Code))
	r.fill()
	return r, nil
}

// apply records an application (review mode): nothing is reserved or sent until a reviewer
// approves it; the checks run again then.
func (s *Service) apply(ctx context.Context, r *Refund) (*Refund, error) {
	r.State = Applied
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		ok, err := insertRefund(ctx, tx, r, Applied)
		if err != nil {
			return err
		}
		if !ok {
			return errTaken
		}
		return event(ctx, tx, r.ID, Applied, r.AppliedBy, r.Reason)
	})
	if err != nil {
		return s.afterTaken(ctx, r, err)
	}
	s.audit(ctx, r, "refund_applied", fmt.Sprintf("%s %s of RRN %s", r.Kind, money.Format(r.Amount), r.OrigRRN))
	r.fill()
	return r, nil
}

// accept reserves the amount on the original and stores the sealed upstream advice, in one
// transaction with the refund row (new, or the approved application in tx); the forwarder
// sends it. A reservation that no longer fits (a concurrent refund took the rest) is refused.
func (s *Service) accept(ctx context.Context, r *Refund, orig *journal.Txn, dec posswitch.BackOffice, now time.Time, approved *approval) (*Refund, error) {
	kind := kindOf(r.Kind)
	rrn, err := s.Journal.NextRRN(ctx)
	if err != nil {
		return nil, err
	}
	up := s.Switch.BackOfficeUpstream(kind, orig, r.Amount, rrn, now)
	plain, _ := json.Marshal(up)
	sealed := s.Journal.Vault.Seal(plain)
	var refused string
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		if approved == nil {
			ok, err := insertRefund(ctx, tx, r, Sent)
			if err != nil {
				return err
			}
			if !ok {
				return errTaken
			}
		}
		var n int64
		if kind == pos.Refund {
			// the original's outcome row is what changes (and what is locked: two reviewers
			// approving refunds of one purchase at once take turns and the second sees the first)
			if _, err := tx.Exec(ctx, "INSERT INTO "+journal.OutcomeOf(orig.ID)+" (id, local_day) VALUES ($1, txn_day($1)) ON CONFLICT DO NOTHING", orig.ID); err != nil {
				return err
			}
			ct, err := tx.Exec(ctx, `UPDATE `+journal.OutcomeOf(orig.ID)+` o SET refunded = coalesce(o.refunded, w.refunded, 0) + $2, at = now()
				FROM `+journal.PartitionOf(orig.ID)+` w WHERE o.id = $1 AND w.id = $1
				AND coalesce(o.state, w.state) = 'A' AND coalesce(o.refunded, w.refunded, 0) + $2 <= w.amount`, orig.ID, r.Amount)
			if err != nil {
				return err
			}
			n = ct.RowsAffected()
			if n == 0 {
				refused = "refund exceeds what is left to refund (another refund of this purchase was accepted meanwhile)"
			}
		} else {
			// one void per purchase: no other void of it under way or done
			var busy bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM bo_refund WHERE orig_id = $1 AND kind = 'void' AND id <> $2 AND state IN ('sent','succeeded'))
				OR NOT EXISTS (SELECT 1 FROM txn WHERE id = $1 AND state = 'A')`, orig.ID, r.ID).Scan(&busy); err != nil {
				return err
			}
			if busy {
				refused = "the purchase is already voided or being voided"
			}
		}
		if refused != "" {
			_, err := tx.Exec(ctx, `UPDATE bo_refund SET state='failed', resp_code=$2, rule=$3, why=$4, accept_day=$5, updated_at=now() WHERE id=$1`,
				r.ID, refusedCode(kind), refusedRule(kind), refused, dayOf(now))
			if err != nil {
				return err
			}
			return event(ctx, tx, r.ID, Failed, "switch", refused)
		}
		_, err := tx.Exec(ctx, `UPDATE bo_refund SET state='sent', rrn=$2, advice=$3, next_at=now(), accept_day=$4, rule='acquirer-checks', why=$5, updated_at=now() WHERE id=$1`,
			r.ID, rrn, sealed, dayOf(now), "passed every acquirer check: "+strings.Join(dec.Passed, ", "))
		if err != nil {
			return err
		}
		if approved != nil {
			if err := event(ctx, tx, r.ID, Approved, approved.by.Name, approved.note); err != nil {
				return err
			}
		}
		return event(ctx, tx, r.ID, Sent, "switch", fmt.Sprintf("advice %s RRN %s stored for the issuer", up.MTI, rrn))
	})
	if err != nil {
		return s.afterTaken(ctx, r, err)
	}
	if refused != "" {
		got, err := s.Get(ctx, "", r.ID)
		if err == nil && approved != nil {
			s.enqueueRefund(ctx, got)
		}
		return got, err
	}
	s.audit(ctx, r, "refund_accepted", fmt.Sprintf("%s %s of RRN %s: RRN %s sent", r.Kind, money.Format(r.Amount), r.OrigRRN, rrn))
	s.Kick()
	return s.Get(ctx, "", r.ID)
}

func refusedCode(k *pos.Kind) string {
	if k == pos.Void {
		return rc.InvalidTxn
	}
	return rc.InvalidAmount
}

func refusedRule(k *pos.Kind) string {
	if k == pos.Void {
		return "void-original"
	}
	return "refund-amount"
}

type approval struct {
	by   Actor
	note string
}

// Approve sends an application: by a reviewer who did not apply for it; the acquirer checks
// run again (the original may have been refunded meanwhile).
func (s *Service) Approve(ctx context.Context, mid string, id int64, by Actor, note, totp string) (*Refund, error) {
	r, err := s.decidable(ctx, mid, id, by)
	if err != nil {
		return nil, err
	}
	set, err := s.Settings(ctx, r.MID)
	if err != nil {
		return nil, err
	}
	if set.TOTPRequired {
		if err := s.VerifyTOTP(ctx, by.UserID, totp); err != nil {
			return nil, err
		}
	}
	// take the decision first: of two reviewers clicking at once, one wins
	var took bool
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		ct, err := tx.Exec(ctx, `UPDATE bo_refund SET state='approved', decided_by=$2, decided_by_id=$3, decided_at=now(), note=$4, updated_at=now()
			WHERE id=$1 AND state='applied'`, id, by.Name, nullID(by.UserID), note)
		if err != nil {
			return err
		}
		took = ct.RowsAffected() == 1
		return nil
	})
	if err != nil {
		return nil, err
	}
	if !took {
		return nil, ErrNotApplied
	}
	s.audit(ctx, r, "refund_approved", fmt.Sprintf("refund %d by %s: %s", id, by.Name, note))
	orig, err := s.Journal.ByID(ctx, r.OrigID)
	if err != nil || orig == nil {
		return nil, fmt.Errorf("original of refund %d: %v", id, err)
	}
	now := s.now()
	dec := s.Switch.CheckBackOffice(ctx, kindOf(r.Kind), orig, r.Amount, now)
	r.Note = note
	if dec.Decision.Code != "" {
		r.Code, r.Rule, r.Why = dec.Decision.Code, dec.Decision.Rule, dec.Decision.Reason
		err := s.inTx(ctx, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `UPDATE bo_refund SET state='failed', resp_code=$2, rule=$3, why=$4, accept_day=$5, updated_at=now() WHERE id=$1`,
				id, r.Code, r.Rule, r.Why, dayOf(now)); err != nil {
				return err
			}
			if err := event(ctx, tx, id, Approved, by.Name, note); err != nil {
				return err
			}
			return event(ctx, tx, id, Failed, "switch", fmt.Sprintf("refused by %s (%s): %s", r.Rule, r.Code, r.Why))
		})
		if err != nil {
			return nil, err
		}
		got, err := s.Get(ctx, "", id)
		if err == nil {
			s.enqueueRefund(ctx, got)
		}
		return got, err
	}
	return s.accept(ctx, r, orig, dec, now, &approval{by: by, note: note})
}

// decidable is the application a reviewer may decide: still applied, and not their own (a refusal
// is audited).
func (s *Service) decidable(ctx context.Context, mid string, id int64, by Actor) (*Refund, error) {
	r, err := s.Get(ctx, mid, id)
	if err != nil {
		return nil, err
	}
	if r.State != Applied {
		return nil, fmt.Errorf("%w (it is %s)", ErrNotApplied, r.State)
	}
	if by.UserID != 0 && by.UserID == r.AppliedByID {
		s.audit(ctx, r, "refund_decision_refused", "own application: "+by.Name)
		return nil, ErrOwnApplication
	}
	return r, nil
}

// Reject closes an application: by a reviewer who did not apply for it.
func (s *Service) Reject(ctx context.Context, mid string, id int64, by Actor, note string) (*Refund, error) {
	r, err := s.decidable(ctx, mid, id, by)
	if err != nil {
		return nil, err
	}
	var took bool
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		ct, err := tx.Exec(ctx, `UPDATE bo_refund SET state='rejected', decided_by=$2, decided_by_id=$3, decided_at=now(), note=$4, updated_at=now()
			WHERE id=$1 AND state='applied'`, id, by.Name, nullID(by.UserID), note)
		if err != nil {
			return err
		}
		if took = ct.RowsAffected() == 1; !took {
			return nil
		}
		return event(ctx, tx, id, Rejected, by.Name, note)
	})
	if err != nil {
		return nil, err
	}
	if !took {
		return nil, ErrNotApplied
	}
	s.audit(ctx, r, "refund_rejected", fmt.Sprintf("refund %d by %s: %s", id, by.Name, note))
	got, err := s.Get(ctx, "", id)
	if err == nil {
		s.enqueueRefund(ctx, got)
	}
	return got, err
}

// Wait polls a refund until it is final or d has passed (the console shows the issuer's answer
// when it comes quickly; the list shows it later otherwise).
func (s *Service) Wait(ctx context.Context, id int64, d time.Duration) (*Refund, error) {
	deadline := time.Now().Add(d)
	for {
		r, err := s.Get(ctx, "", id)
		if err != nil || r.Final || r.State == Applied || time.Now().After(deadline) {
			return r, err
		}
		select {
		case <-ctx.Done():
			return r, nil
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// audit writes the audit log (PCI DSS 10): who decided what about which refund.
func (s *Service) audit(ctx context.Context, r *Refund, action, detail string) {
	_, err := s.pool().Exec(ctx, `INSERT INTO audit_log (login, user_id, mid, action, detail, ok) VALUES ($1,$2,$3,$4,$5,true)`,
		r.AppliedBy, nullID(r.AppliedByID), r.MID, action, detail)
	if err != nil {
		s.Log.Warn("audit entry not written", "action", action, "err", err)
	}
}

func dayOf(t time.Time) time.Time {
	y, m, d := t.Date()
	return time.Date(y, m, d, 0, 0, 0, 0, t.Location())
}

// journalRow is the txn row of a back-office refund or void: the original's terminal and card
// (masked and hashed, as journaled), batch 000000 (never a terminal's: they start at 000001) and
// the refund's id as STAN, so that the row's key is the refund's and writing it twice is a no-op.
func (s *Service) journalRow(r *Refund, orig *journal.Txn, kind *pos.Kind, day, now time.Time) *journal.Txn {
	return &journal.Txn{LocalDay: day, SettleDate: s.Switch.SettleDateOf(now), Env: orig.Env, MID: r.MID, TID: orig.TID,
		Batch: "000000", STAN: fmt.Sprintf("%06d", r.ID%1000000), MTI: kind.MTI, Kind: kind.Name, ProcCode: kind.ProcCode, Amount: r.Amount,
		EntryMode: "012", Type: kind.Type, PANMasked: orig.PANMasked, PANHash: orig.PANHash, CardOrg: orig.CardOrg, MCC: orig.MCC,
		RRN: r.RRN, OrigID: &orig.ID, ReqHash: s.Journal.Vault.RequestHash([]byte(fmt.Sprintf("bo_refund/%d", r.ID))),
		Operator: ""}
}
