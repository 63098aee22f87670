package journal_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	rc "github.com/shoudan/shoudan/responsecodes"
	"github.com/shoudan/shoudan/switch/journal"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pendingPurchase journals a reversible purchase as the switch does before it goes upstream:
// pending, with its sealed reversal.
func pendingPurchase(t *testing.T, j *journal.Journal, tid, batch, stan string) *journal.Txn {
	t.Helper()
	d := time.Now()
	rec := &journal.Txn{LocalDay: d, SettleDate: d, Env: "production", MID: "M1", TID: tid, Batch: batch, STAN: stan, MTI: "0200",
		Kind: "purchase", ProcCode: "000000", CardOrg: "CUP", Amount: 1000, State: journal.Pending, WentUpstream: true, ReqHash: []byte(stan), Trace: "frame",
		Rule: journal.PassedRule, Reason: journal.PassedReason,
		Reversal: j.Vault.Seal([]byte("reversal of " + stan))}
	ok, err := j.Insert(t.Context(), rec)
	require.NoError(t, err)
	require.True(t, ok)
	return rec
}

func approve(t *testing.T, j *journal.Journal, rec *journal.Txn) {
	t.Helper()
	require.NoError(t, j.Finish(t.Context(), rec.ID, journal.Outcome{State: journal.Approved, RespCode: "00", IssuerCode: "00", AuthCode: "123456",
		Rule: "issuer", Reason: "issuer answered " + rc.Describe(rc.Approved).English, WentUpstream: true, KeepReversal: true, IssuerMicros: 1500}))
}

func hasReversal(t *testing.T, j *journal.Journal, id int64) bool {
	t.Helper()
	var n int
	require.NoError(t, j.Pool.QueryRow(t.Context(), "SELECT count(*) FROM txn_reversal WHERE id = $1", id).Scan(&n))
	var viewed bool
	require.NoError(t, j.Pool.QueryRow(t.Context(), "SELECT reversal IS NOT NULL FROM txn WHERE id = $1", id).Scan(&viewed))
	require.Equal(t, n == 1, viewed, "the view shows the reversal table")
	return n == 1
}

// TestPreparedReversalKeptOnlyWhileNeeded: the sealed reversal is written with the request and
// deleted (not merely hidden) once the transaction can no longer be reversed: declined,
// reversed, its reversal acknowledged by the issuer, its batch settled. An approved one keeps it.
func TestPreparedReversalKeptOnlyWhileNeeded(t *testing.T) {
	j := openJournal(t)
	ctx := t.Context()

	declined := pendingPurchase(t, j, "T1", "000001", "000001")
	assert.True(t, hasReversal(t, j, declined.ID), "written with the request")
	require.NoError(t, j.Finish(ctx, declined.ID, journal.Outcome{State: journal.Declined, RespCode: "51", IssuerCode: "51",
		Rule: "issuer", Reason: "issuer answered Insufficient funds", WentUpstream: true}))
	assert.False(t, hasReversal(t, j, declined.ID), "declined: nothing to reverse")

	kept := pendingPurchase(t, j, "T1", "000001", "000002")
	approve(t, j, kept)
	assert.True(t, hasReversal(t, j, kept.ID), "approved: a reversal may still come")

	reversed := pendingPurchase(t, j, "T1", "000001", "000003")
	approve(t, j, reversed)
	require.NoError(t, j.Commit(ctx, func(b *pgx.Batch) {
		journal.ArmReversalOp(reversed.ID)(b)
		journal.SetStateOp(reversed.ID, journal.Reversed)(b)
	}))
	assert.False(t, hasReversal(t, j, reversed.ID), "reversed: never again")
	es, err := j.ClaimReversals(ctx, 10, time.Minute)
	require.NoError(t, err)
	require.Len(t, es, 1, "armed from the sealed copy before it was dropped")
	assert.Equal(t, reversed.ID, es[0].TxnID)
	plain, err := j.Vault.Open(es[0].Payload)
	require.NoError(t, err)
	assert.Equal(t, "reversal of 000003", string(plain))

	acked := pendingPurchase(t, j, "T2", "000001", "000001")
	approve(t, j, acked)
	require.NoError(t, j.Commit(ctx, journal.ArmReversalOp(acked.ID)))
	es, err = j.ClaimReversals(ctx, 10, time.Minute)
	require.NoError(t, err)
	require.Len(t, es, 1)
	require.NoError(t, j.AckReversal(ctx, es[0].ID))
	assert.False(t, hasReversal(t, j, acked.ID), "acknowledged by the issuer")

	settled := pendingPurchase(t, j, "T3", "000007", "000001")
	approve(t, j, settled)
	other := pendingPurchase(t, j, "T3", "000008", "000002")
	approve(t, j, other)
	require.NoError(t, j.BatchSettled(ctx, time.Now(), "M1", "T3", "000007"))
	assert.False(t, hasReversal(t, j, settled.ID), "its batch settled")
	assert.True(t, hasReversal(t, j, other.ID), "another batch of the terminal")
	assert.True(t, hasReversal(t, j, kept.ID))
}

// TestRequestRowsAreNeverUpdated: the request row is insert-only (migration 0021): outcomes,
// voids, reversals, refunds and recovery write outcome rows, and the view shows the result.
func TestRequestRowsAreNeverUpdated(t *testing.T) {
	j := openJournal(t)
	ctx := t.Context()
	var recs []*journal.Txn
	for i := range 20 {
		rec := pendingPurchase(t, j, fmt.Sprintf("U%d", i%4), "000001", fmt.Sprintf("%06d", i+1))
		approve(t, j, rec)
		recs = append(recs, rec)
	}
	require.NoError(t, j.Commit(ctx, journal.SetStateOp(recs[0].ID, journal.Voided)))
	require.NoError(t, j.Commit(ctx, journal.SetStateOp(recs[1].ID, journal.Reversed)))
	require.NoError(t, j.Commit(ctx, journal.AddRefundedOp(recs[2].ID, 300)))
	require.NoError(t, j.Commit(ctx, journal.AddRefundedOp(recs[2].ID, 200)))
	require.NoError(t, j.BatchSettled(ctx, time.Now(), "M1", "U3", "000001"))

	got := func(id int64) (state string, refunded int64, code string) {
		require.NoError(t, j.Pool.QueryRow(ctx, "SELECT state, refunded, resp_code FROM txn WHERE id = $1", id).Scan(&state, &refunded, &code))
		return
	}
	s, _, code := got(recs[0].ID)
	assert.Equal(t, "V", s)
	assert.Equal(t, "00", code, "the outcome's code, not the request row's")
	s, _, _ = got(recs[1].ID)
	assert.Equal(t, "R", s)
	s, refunded, _ := got(recs[2].ID)
	assert.Equal(t, "A", s)
	assert.Equal(t, int64(500), refunded)

	// the commonest values are written as NULL and shown by the view as they were given
	var rule, reason, updated, wRefunded, oRule, oReason any
	var vRule, vReason string
	var vRefunded int64
	var vUpdated, created time.Time
	require.NoError(t, j.Pool.QueryRow(ctx, `SELECT w.rule, w.reason, w.updated_at, w.refunded, o.rule, o.reason, v.rule, v.reason, v.refunded, v.updated_at, v.created_at
		FROM txn_request w JOIN txn_outcome o USING (id, local_day) JOIN txn v USING (id, local_day) WHERE id = $1`, recs[5].ID).
		Scan(&rule, &reason, &updated, &wRefunded, &oRule, &oReason, &vRule, &vReason, &vRefunded, &vUpdated, &created))
	assert.Nil(t, rule)
	assert.Nil(t, reason)
	assert.Nil(t, updated)
	assert.Nil(t, wRefunded)
	assert.Nil(t, oRule, "an outcome with a response code is the issuer's: its rule is not written")
	assert.Nil(t, oReason, "an issuer's approval: the reason is not written")
	assert.Equal(t, "issuer", vRule)
	assert.Equal(t, journal.IssuerApproved, vReason)
	assert.Equal(t, "issuer answered "+rc.Describe(rc.Approved).English, journal.IssuerApproved, "what the switch writes for an approval")
	assert.Zero(t, vRefunded)
	assert.False(t, vUpdated.Before(created), "updated_at is the outcome's time")
	// the batch, STAN and MTI are the row's dkey, production and empty codes are not written,
	// and the issuer code equal to the response code neither
	var wBatch, wStan, wMTI, wEnv, wAuth, oIssuer, wKind, wProc, wOrg any
	var vBatch, vStan, vMTI, vEnv, vIssuer, vKind, vProc, vOrg string
	require.NoError(t, j.Pool.QueryRow(ctx, `SELECT w.batch, w.stan, w.mti, w.env, w.auth_code, o.issuer_code, w.kind, w.proc_code, w.card_org,
			v.batch, v.stan, v.mti, v.env, v.issuer_code, v.kind, v.proc_code, v.card_org
		FROM txn_request w JOIN txn_outcome o USING (id, local_day) JOIN txn v USING (id, local_day) WHERE id = $1`, recs[5].ID).
		Scan(&wBatch, &wStan, &wMTI, &wEnv, &wAuth, &oIssuer, &wKind, &wProc, &wOrg, &vBatch, &vStan, &vMTI, &vEnv, &vIssuer, &vKind, &vProc, &vOrg))
	assert.Equal(t, []any{nil, nil, nil, nil, nil, nil, nil, nil, nil}, []any{wBatch, wStan, wMTI, wEnv, wAuth, oIssuer, wKind, wProc, wOrg})
	assert.Equal(t, []string{"000001", "000006", "0200", "production", "00", "purchase", "000000", "CUP"},
		[]string{vBatch, vStan, vMTI, vEnv, vIssuer, vKind, vProc, vOrg})
	// an issuer code that is not the response code is written, and so is any rule but issuer's
	odd := pendingPurchase(t, j, "U8", "000001", "000098")
	require.NoError(t, j.Finish(ctx, odd.ID, journal.Outcome{State: journal.Declined, RespCode: "05", IssuerCode: "Z1", Rule: "issuer", Reason: "issuer answered Z1"}))
	timedOut := pendingPurchase(t, j, "U8", "000001", "000097")
	require.NoError(t, j.Finish(ctx, timedOut.ID, journal.Outcome{State: journal.Declined, RespCode: "98", Rule: "issuer-timeout", Reason: "no answer"}))
	for id, want := range map[int64][]string{odd.ID: {"05", "Z1", "issuer"}, timedOut.ID: {"98", "", "issuer-timeout"}} {
		var code, issuer, r string
		require.NoError(t, j.Pool.QueryRow(ctx, "SELECT resp_code, issuer_code, rule FROM txn WHERE id = $1", id).Scan(&code, &issuer, &r))
		assert.Equal(t, want, []string{code, issuer, r})
	}
	pending := pendingPurchase(t, j, "U9", "000001", "000099")
	require.NoError(t, j.Pool.QueryRow(ctx, "SELECT rule, reason, state, refunded FROM txn WHERE id = $1", pending.ID).Scan(&vRule, &vReason, &s, &vRefunded))
	assert.Equal(t, []any{journal.PassedRule, journal.PassedReason, "P", int64(0)}, []any{vRule, vReason, s, vRefunded})

	// the statistics of the request partition, once they are flushed (every backend reports
	// at most every second): 23 inserts, no update, no delete
	deadline := time.Now().Add(10 * time.Second)
	var ins, upd, del int64
	for time.Now().Before(deadline) {
		require.NoError(t, j.Pool.QueryRow(ctx, `SELECT coalesce(sum(n_tup_ins), 0), coalesce(sum(n_tup_upd), 0), coalesce(sum(n_tup_del), 0)
			FROM pg_stat_user_tables WHERE relname ~ '^txn_p[0-9]{8}$'`).Scan(&ins, &upd, &del))
		if ins >= 23 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	require.Equal(t, int64(23), ins, "the inserts are counted")
	assert.Zero(t, upd, "no request row was updated")
	assert.Zero(t, del)
}
