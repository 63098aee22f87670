package refunds

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/shoudan/shoudan/issuerlink"
	rc "github.com/shoudan/shoudan/responsecodes"
	"github.com/shoudan/shoudan/spec"
	"github.com/shoudan/shoudan/spec/upstream"
	"github.com/shoudan/shoudan/switch/journal"
)

// The forwarder delivers accepted refunds and voids upstream with the mechanism of the
// reversal queue (saf): due rows are claimed with SELECT … FOR UPDATE SKIP LOCKED and leased, so
// two nodes (or a restarted one) never send the same advice at once; an answer is made durable
// with the outcome in one statement guarded by the row's state, so an answer processed twice
// changes nothing the second time; no answer (a timeout, a crash mid-send, the link down, or the
// issuer's 91/96/98) leaves it due again after a backoff, and the repeat goes out as 0221 with
// the same F37, by which the issuer recognises it and answers without applying it twice.

// Kick wakes the forwarder (a new advice is due now).
func (s *Service) Kick() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Run forwards advices and delivers notifications until ctx ends.
func (s *Service) Run(ctx context.Context) {
	done := make(chan struct{})
	go func() { s.runNotify(ctx); close(done) }()
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			<-done
			return
		case <-t.C:
		case <-s.kick:
		}
		for s.forwardDue(ctx) > 0 && ctx.Err() == nil {
		}
	}
}

type due struct {
	id       int64
	attempts int
	advice   []byte
	kind     string
}

// forwardDue sends what is due; it reports how many it sent.
func (s *Service) forwardDue(ctx context.Context) int {
	rows, err := s.pool().Query(ctx, `UPDATE bo_refund SET next_at = now() + $2::interval, attempts = attempts + 1, updated_at = now()
		WHERE id IN (SELECT id FROM bo_refund WHERE state = 'sent' AND next_at <= now() ORDER BY id FOR UPDATE SKIP LOCKED LIMIT $1)
		RETURNING id, attempts - 1, advice, kind`, 16, s.Lease.String())
	if err != nil {
		return 0
	}
	var ds []due
	for rows.Next() {
		var d due
		if rows.Scan(&d.id, &d.attempts, &d.advice, &d.kind) == nil {
			ds = append(ds, d)
		}
	}
	rows.Close()
	for _, d := range ds {
		s.deliver(ctx, d)
	}
	return len(ds)
}

// retryable answers leave the advice due again: the issuer did not decide it.
func retryable(code string) bool {
	return code == rc.IssuerDown || code == rc.SystemMalfunction || code == rc.IssuerTimeout
}

func (s *Service) deliver(ctx context.Context, d due) {
	plain, err := s.Journal.Vault.Open(d.advice)
	var m upstream.Message
	if err == nil {
		err = json.Unmarshal(plain, &m)
	}
	if err != nil {
		s.Log.Error("back-office advice does not open: left queued", "refund", d.id, "err", err)
		s.retry(ctx, d, s.MaxBackoff, "sealed advice does not open: "+err.Error())
		return
	}
	if d.kind == "refund" && d.attempts > 0 {
		m.MTI = "0221" // a repeat
	}
	sent := time.Now()
	ans, err := s.Switch.Link.Send(&m)
	rtt := time.Since(sent)
	switch {
	case err != nil:
		why := err.Error()
		if errors.Is(err, issuerlink.ErrNoRoute) {
			why = "no route to the issuer (link down)"
		}
		s.retry(ctx, d, s.backoff(d.attempts), why)
		return
	case retryable(ans.RespCode):
		s.retry(ctx, d, s.backoff(d.attempts), "issuer answered "+ans.RespCode+" ("+rc.Describe(ans.RespCode).English+")")
		return
	}
	if err := s.finish(ctx, d.id, &m, ans, rtt); err != nil {
		s.Log.Error("issuer's answer to a back-office advice not recorded: it will be repeated", "refund", d.id, "err", err)
		s.retry(ctx, d, s.backoff(d.attempts), "answer not recorded: "+err.Error())
		return
	}
	s.Log.Info("back-office advice answered", "refund", d.id, "mti", m.MTI, "rrn", m.RRN, "amount", m.Amount,
		"issuer_code", ans.RespCode, "pan", spec.MaskPAN(m.PAN), "attempt", d.attempts+1)
}

func (s *Service) backoff(attempts int) time.Duration {
	return min(s.MaxBackoff, time.Duration(1<<min(attempts, 10))*200*time.Millisecond)
}

func (s *Service) retry(ctx context.Context, d due, after time.Duration, why string) {
	_, err := s.pool().Exec(ctx, `UPDATE bo_refund SET next_at = now() + $2::interval, last_error = $3, updated_at = now() WHERE id = $1 AND state = 'sent'`,
		d.id, after.String(), why)
	if err != nil {
		s.Log.Warn("back-office advice retry not recorded (the lease makes it due anyway)", "refund", d.id, "err", err)
	}
}

// finish makes the issuer's answer durable: the journal row of the outcome (its key is the
// refund's, so a second write is a no-op) and, in the same commit and guarded by the refund's
// state, the refund's final state, the original marked voided or its reservation released, the
// history and the notification.
func (s *Service) finish(ctx context.Context, id int64, m, ans *upstream.Message, rtt time.Duration) error {
	r, err := s.Get(ctx, "", id)
	if err != nil {
		return err
	}
	if r.State != Sent {
		return nil // finished by another sender
	}
	orig, err := s.Journal.ByID(ctx, r.OrigID)
	if err != nil || orig == nil {
		return fmt.Errorf("original %d: %v", r.OrigID, err)
	}
	kind := kindOf(r.Kind)
	var acceptDay time.Time
	if err := s.pool().QueryRow(ctx, "SELECT accept_day FROM bo_refund WHERE id=$1", id).Scan(&acceptDay); err != nil {
		return err
	}
	now := s.now()
	rec := s.journalRow(r, orig, kind, acceptDay, now)
	rec.UpTrace, rec.UpTime, rec.WentUpstream = m.Trace, m.Transmission, true
	rec.IssuerCode, rec.RespCode, rec.AuthCode, rec.IssuerMicros = ans.RespCode, ans.RespCode, ans.AuthCode, rtt.Microseconds()
	rec.Rule, rec.Reason, rec.Trace = "issuer", "issuer answered "+rc.Describe(ans.RespCode).English, "back-office"
	final, state := Succeeded, byte(journal.Approved)
	if ans.RespCode != rc.Approved {
		final, state = Failed, journal.Declined
	}
	rec.State = state
	r.State, r.Code, r.AuthCode, r.Rule, r.Why = final, ans.RespCode, ans.AuthCode, rec.Rule, rec.Reason
	r.fill()
	payload, key := s.refundPayload(r)
	_, err = s.Journal.Insert(ctx, rec, func(b *pgx.Batch) {
		// the original's outcome row, which the next statement changes (the original's request
		// row is never updated)
		b.Queue(`INSERT INTO txn_outcome (id, local_day) SELECT orig_id, txn_day(orig_id) FROM bo_refund
			WHERE id = $1 AND state = 'sent' AND orig_id IS NOT NULL ON CONFLICT DO NOTHING`, id)
		b.Queue(`WITH done AS (
				UPDATE bo_refund SET state = $2, resp_code = $3, auth_code = $4, rule = 'issuer', why = $5, last_error = '', updated_at = now(),
					txn_id = (SELECT id FROM txn_request WHERE local_day=$6 AND term = (SELECT no FROM txn_term WHERE mid=$7 AND tid=$8)
						AND dkey = txn_dkey($9, $10, $11) AND mid=$7 AND tid=$8)
				WHERE id = $1 AND state = 'sent' RETURNING id, orig_id, amount, kind, mid),
			released AS (UPDATE txn_outcome o SET refunded = coalesce(o.refunded, w.refunded, 0) - done.amount, at = now() FROM done, txn_request w
				WHERE o.id = done.orig_id AND o.local_day = txn_day(done.orig_id) AND w.id = o.id AND w.local_day = o.local_day
				AND done.kind = 'refund' AND $2 = 'failed'),
			voided AS (INSERT INTO txn_outcome (id, local_day, at, state) SELECT done.orig_id, txn_day(done.orig_id), now(), 'V' FROM done
				WHERE done.kind = 'void' AND $2 = 'succeeded'
				ON CONFLICT (id, local_day) DO UPDATE SET at = EXCLUDED.at, state = EXCLUDED.state),
			ev AS (INSERT INTO bo_refund_event (refund_id, state, who, note) SELECT id, $2, 'issuer', $12 FROM done)
			INSERT INTO notification (mid, event_key, event, payload, expires_at)
				SELECT done.mid, $13, $14, $15, now() + $16::interval FROM done JOIN merchant_backoffice mb ON mb.mid = done.mid
				WHERE cardinality(mb.callbacks) > 0
			ON CONFLICT (event_key) DO NOTHING`,
			id, final, ans.RespCode, ans.AuthCode, rec.Reason, rec.LocalDay, rec.MID, rec.TID, rec.Batch, rec.STAN, rec.MTI,
			fmt.Sprintf("%s answered %s %s", m.MTI, ans.RespCode, ans.AuthCode), key, "refund."+final, payload, s.Notify.Expiry.String())
	})
	if err == nil {
		s.notifyKick()
	}
	return err
}
