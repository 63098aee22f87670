package refunds_test

import (
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"
	"github.com/shoudan/shoudan/issuerlink/sim"
	rc "github.com/shoudan/shoudan/responsecodes"
	"github.com/shoudan/shoudan/spec"
	"github.com/shoudan/shoudan/switch/backoffice"
	"github.com/shoudan/shoudan/switch/journal"
	"github.com/shoudan/shoudan/switch/refunds"
	"github.com/shoudan/shoudan/switch/switchtest"
	"github.com/shoudan/shoudan/terminals/device"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) { switchtest.Main(m) }

const (
	mid     = "898310058120001"
	goodPAN = "6222021234567890123"
)

var good = device.Chip(goodPAN, "2912", "123456")

// fast makes notifications retry quickly.
func fast(y string) string {
	return strings.NewReplacer("backoff: 15s", "backoff: 100ms", "max_backoff: 1h", "max_backoff: 400ms").Replace(y)
}

func start(t *testing.T) *switchtest.Switch {
	return switchtest.Start(t, switchtest.Options{Edit: fast})
}

// purchase makes an approved purchase daysAgo days ago (the switch's clock moved back for it).
func purchase(t *testing.T, s *switchtest.Switch, amount int64, daysAgo int) *journal.Txn {
	t.Helper()
	d := s.SignedOn("10000001")
	if daysAgo > 0 {
		s.Switch.Now = func() time.Time { return time.Now().AddDate(0, 0, -daysAgo) }
		defer func() { s.Switch.Now = time.Now }()
	}
	p, err := d.Purchase(good, amount)
	require.NoError(t, err)
	require.Equal(t, rc.Approved, p.Code())
	row, err := s.Journal.ByRRN(t.Context(), p.Resp.RRN)
	require.NoError(t, err)
	return row
}

func balance(s *switchtest.Switch) int64 {
	return s.Sim.Issuer.Ledger.Snapshot().Balances[spec.MaskPAN(goodPAN)]
}

func req(orig *journal.Txn, amount int64, key string) refunds.Request {
	return refunds.Request{MID: orig.MID, OrigRRN: orig.RRN, OrigDay: orig.LocalDay, Amount: amount, Reason: "customer returned it",
		IdemKey: key, Source: refunds.FromConsole, By: refunds.Actor{Name: "op", UserID: 1}}
}

func final(t *testing.T, s *switchtest.Switch, r *refunds.Refund) *refunds.Refund {
	t.Helper()
	require.NotZero(t, r.ID, "stored: %+v", r)
	got, err := s.Refunds.Wait(t.Context(), r.ID, 10*time.Second)
	require.NoError(t, err)
	require.True(t, got.Final, "final within 10s: %+v", got)
	return got
}

// TestDirectRefund: a back-office refund runs the terminal's refund rules, is journaled like a
// terminal refund, credits the card at the issuer once, and its idempotency key makes a double
// click one refund; a refund over what is left is refused with the rule's reason.
func TestDirectRefund(t *testing.T) {
	s := start(t)
	ctx := t.Context()
	orig := purchase(t, s, 30000, 3)
	before := balance(s)

	r, err := s.Refunds.Request(ctx, req(orig, 10000, "form-1"))
	require.NoError(t, err)
	r = final(t, s, r)
	assert.Equal(t, refunds.Succeeded, r.State, "%+v", r)
	assert.Equal(t, rc.Approved, r.Code)
	assert.NotEmpty(t, r.AuthCode)
	assert.Equal(t, before+10000, balance(s), "the issuer credited the card once (found by F90, no PAN sent)")

	row, err := s.Journal.ByRRN(ctx, r.RRN)
	require.NoError(t, err)
	require.NotNil(t, row, "the refund is journaled under its own RRN")
	assert.Equal(t, "refund", row.Kind)
	assert.Equal(t, byte(journal.Approved), row.State)
	assert.Equal(t, orig.ID, *row.OrigID)
	assert.Equal(t, orig.PANMasked, row.PANMasked)
	o, _ := s.Journal.ByID(ctx, orig.ID)
	assert.Equal(t, int64(10000), o.Refunded)

	again, err := s.Refunds.Request(ctx, req(orig, 10000, "form-1"))
	require.NoError(t, err, "a double click")
	assert.Equal(t, r.ID, again.ID, "is the same refund")
	assert.Equal(t, before+10000, balance(s))

	_, err = s.Refunds.Request(ctx, req(orig, 5000, "form-1"))
	assert.ErrorIs(t, err, refunds.ErrIdempotency, "the same key for another request")

	over, err := s.Refunds.Request(ctx, req(orig, 20001, "form-2"))
	require.NoError(t, err)
	assert.Equal(t, refunds.Failed, over.State)
	assert.Equal(t, rc.InvalidAmount, over.Code)
	assert.Equal(t, "refund-amount", over.Rule)
	assert.Contains(t, over.Why, "exceeds what is left to refund (20000 of 30000)")
	assert.Equal(t, before+10000, balance(s), "nothing sent")

	rest, err := s.Refunds.Request(ctx, req(orig, 20000, "form-3"))
	require.NoError(t, err)
	assert.Equal(t, refunds.Succeeded, final(t, s, rest).State, "the rest")

	// a terminal refund sees what the back office refunded
	d := s.SignedOn("10000001")
	tr, err := d.Refund(good, orig.RRN, orig.LocalDay.Format("0102"), 1)
	require.NoError(t, err)
	assert.Equal(t, rc.InvalidAmount, tr.Code(), "nothing left for the terminal either")

	// today's purchase is voided, not refunded (the terminal's rule 19 and code 25)
	today := purchase(t, s, 500, 0)
	r2, err := s.Refunds.Request(ctx, req(today, 100, "form-4"))
	require.NoError(t, err)
	assert.Equal(t, rc.NoOriginal, r2.Code)
	assert.Contains(t, r2.Why, "void it instead")

	// the refused ones are journaled as declines, like a terminal's
	var declined int
	require.NoError(t, s.Journal.Pool.QueryRow(ctx, "SELECT count(*) FROM txn WHERE kind='refund' AND state='D' AND batch='000000'").Scan(&declined))
	assert.Equal(t, 2, declined)
	hist, err := s.Refunds.History(ctx, r.ID)
	require.NoError(t, err)
	var states []string
	for _, e := range hist {
		states = append(states, e.State)
	}
	assert.Equal(t, []string{"sent", "succeeded"}, states)
}

// TestRefundPermission: a merchant without refund permission is refused with rule 18's code.
func TestRefundPermission(t *testing.T) {
	s := start(t)
	d := s.SignedOn("10000006")
	s.Switch.Now = func() time.Time { return time.Now().AddDate(0, 0, -2) }
	p, err := d.Purchase(good, 1000)
	s.Switch.Now = time.Now
	require.NoError(t, err)
	require.Equal(t, rc.Approved, p.Code())
	orig, _ := s.Journal.ByRRN(t.Context(), p.Resp.RRN)
	r, err := s.Refunds.Request(t.Context(), req(orig, 100, "k"))
	require.NoError(t, err)
	assert.Equal(t, rc.NotPermittedToTerm, r.Code)
	assert.Equal(t, "refund-allowed", r.Rule)
}

// TestVoid: a back-office void of today's unsettled purchase restores the card and marks the
// purchase voided; a second void is refused.
func TestVoid(t *testing.T) {
	s := start(t)
	ctx := t.Context()
	before := balance(s)
	orig := purchase(t, s, 4200, 0)
	require.Equal(t, before-4200, balance(s))
	q := req(orig, 0, "void-1")
	q.Kind = "void"
	v, err := s.Refunds.Request(ctx, q)
	require.NoError(t, err)
	v = final(t, s, v)
	assert.Equal(t, refunds.Succeeded, v.State, "%+v", v)
	assert.Equal(t, int64(4200), v.Amount, "a void is for the full amount")
	assert.Equal(t, before, balance(s))
	o, _ := s.Journal.ByID(ctx, orig.ID)
	assert.Equal(t, byte(journal.Voided), o.State)

	q.IdemKey = "void-2"
	v2, err := s.Refunds.Request(ctx, q)
	require.NoError(t, err)
	assert.Equal(t, refunds.Failed, v2.State)
	assert.Equal(t, rc.InvalidTxn, v2.Code, "the terminal's rule 16: not an approved, unvoided purchase")

	// a purchase of an earlier day is refunded, not voided
	old := purchase(t, s, 100, 2)
	q = req(old, 0, "void-3")
	q.Kind = "void"
	v3, err := s.Refunds.Request(ctx, q)
	require.NoError(t, err)
	assert.Equal(t, refunds.Failed, v3.State)
	assert.Equal(t, rc.NoOriginal, v3.Code, "%+v", v3)
}

// TestReviewMode: in review mode an operator's refund is an application; the applicant cannot
// decide it; another reviewer approves it and only then is it sent; a rejected one is never sent.
func TestReviewMode(t *testing.T) {
	s := start(t)
	ctx := t.Context()
	require.NoError(t, s.Refunds.SaveSettings(ctx, &refunds.Settings{MID: mid, Review: true}, "admin"))
	users := backoffice.NewStore(s.Journal.Pool)
	op, err := users.AddUser(ctx, backoffice.NewUser{Login: "op1", Password: "secret-op1", Role: backoffice.MerchantOperator, MID: mid})
	require.NoError(t, err)
	rv, err := users.AddUser(ctx, backoffice.NewUser{Login: "rev1", Password: "secret-rev1", Role: backoffice.RefundReviewer, MID: mid})
	require.NoError(t, err)
	orig := purchase(t, s, 9000, 5)
	before := balance(s)

	q := req(orig, 3000, "app-1")
	q.By = refunds.Actor{Name: rv.Login, UserID: rv.ID} // a reviewer applying herself
	own, err := s.Refunds.Request(ctx, q)
	require.NoError(t, err)
	assert.Equal(t, refunds.Applied, own.State)
	_, err = s.Refunds.Approve(ctx, mid, own.ID, refunds.Actor{Name: rv.Login, UserID: rv.ID}, "mine", "")
	assert.ErrorIs(t, err, refunds.ErrOwnApplication)

	q = req(orig, 3000, "app-2")
	q.By = refunds.Actor{Name: op.Login, UserID: op.ID}
	app, err := s.Refunds.Request(ctx, q)
	require.NoError(t, err)
	assert.Equal(t, refunds.Applied, app.State)
	time.Sleep(500 * time.Millisecond)
	assert.Equal(t, before, balance(s), "nothing sent before approval")
	ok, err := s.Refunds.Approve(ctx, mid, app.ID, refunds.Actor{Name: rv.Login, UserID: rv.ID}, "receipt checked", "")
	require.NoError(t, err)
	ok = final(t, s, ok)
	assert.Equal(t, refunds.Succeeded, ok.State)
	assert.Equal(t, rv.Login, ok.DecidedBy)
	assert.Equal(t, before+3000, balance(s))
	_, err = s.Refunds.Approve(ctx, mid, app.ID, refunds.Actor{Name: rv.Login, UserID: rv.ID}, "again", "")
	assert.ErrorIs(t, err, refunds.ErrNotApplied)

	no, err := s.Refunds.Reject(ctx, mid, own.ID, refunds.Actor{Name: op.Login, UserID: op.ID}, "duplicate of app-2")
	require.NoError(t, err)
	assert.Equal(t, refunds.Rejected, no.State)
	assert.Equal(t, before+3000, balance(s))

	hist, err := s.Refunds.History(ctx, app.ID)
	require.NoError(t, err)
	var states []string
	for _, e := range hist {
		states = append(states, e.State+":"+e.Who)
	}
	assert.Equal(t, []string{"applied:op1", "approved:rev1", "sent:switch", "succeeded:issuer"}, states)
	list, err := s.Refunds.List(ctx, refunds.Filter{MID: mid, State: refunds.Rejected})
	require.NoError(t, err)
	require.Len(t, list, 1)
	assert.Equal(t, own.ID, list[0].ID)
	other, err := s.Refunds.List(ctx, refunds.Filter{MID: "898310053110002"})
	require.NoError(t, err)
	assert.Empty(t, other, "another merchant sees none of them")
}

// TestAdviceExactlyOnce: the issuer applies the refund but its answers are lost twice: the
// stored advice is repeated (0221) until answered, and the card is credited once.
func TestAdviceExactlyOnce(t *testing.T) {
	s := start(t)
	ctx := t.Context()
	orig := purchase(t, s, 8000, 1)
	before := balance(s)
	s.Sim.SetFaults(sim.Faults{SwallowNext: 2})
	r, err := s.Refunds.Request(ctx, req(orig, 8000, "lost-answers"))
	require.NoError(t, err)
	r = final(t, s, r)
	assert.Equal(t, refunds.Succeeded, r.State)
	assert.GreaterOrEqual(t, r.Attempts, 3, "sent, repeated, repeated")
	assert.Equal(t, before+8000, balance(s), "credited once")
	got := s.Sim.Received()
	assert.Equal(t, int64(1), got["0220"], "%v", got)
	assert.GreaterOrEqual(t, got["0221"], int64(2), "%v", got)
	var rows int
	require.NoError(t, s.Journal.Pool.QueryRow(ctx, "SELECT count(*) FROM txn WHERE rrn=$1", r.RRN).Scan(&rows))
	assert.Equal(t, 1, rows, "one journal row")
}

// TestAdviceWhileIssuerDown: accepted while the issuer is unreachable, the refund waits (sent,
// with the error recorded) and is delivered once the issuer is back.
func TestAdviceWhileIssuerDown(t *testing.T) {
	s := start(t)
	ctx := t.Context()
	orig := purchase(t, s, 600, 2)
	before := balance(s)
	s.Sim.SetFaults(sim.Faults{DropRate: 1})
	r, err := s.Refunds.Request(ctx, req(orig, 600, "down"))
	require.NoError(t, err)
	time.Sleep(1500 * time.Millisecond)
	cur, err := s.Refunds.Get(ctx, mid, r.ID)
	require.NoError(t, err)
	assert.Equal(t, refunds.Sent, cur.State)
	assert.NotEmpty(t, cur.LastError, "the failed attempts say why")
	s.Sim.SetFaults(sim.Faults{})
	assert.Equal(t, refunds.Succeeded, final(t, s, r).State)
	assert.Equal(t, before+600, balance(s))
}

func TestSettingsValidated(t *testing.T) {
	for _, tc := range []struct {
		urls []string
		err  string
	}{
		{[]string{"ftp://x/y"}, "callbacks[0]: expected an absolute http(s) URL"},
		{[]string{"http://a/1", "http://a/2", "http://a/3", "http://a/4"}, "at most 3 URLs, found 4"},
		{[]string{"https://user:pw@a/1"}, "no credentials"},
	} {
		err := refunds.CheckSettings(&refunds.Settings{Callbacks: tc.urls})
		require.Error(t, err, "%v", tc.urls)
		assert.Contains(t, err.Error(), tc.err)
	}
	assert.NoError(t, refunds.CheckSettings(&refunds.Settings{Callbacks: []string{"https://m.example/notify"}}))
}

// TestTOTP: with the dynamic password required, a console refund needs a code from the user's
// confirmed authenticator; a wrong code, no enrolment and a code used before are refused.
func TestTOTP(t *testing.T) {
	s := start(t)
	ctx := t.Context()
	require.NoError(t, s.Refunds.SaveSettings(ctx, &refunds.Settings{MID: mid, TOTPRequired: true}, "admin"))
	orig := purchase(t, s, 5000, 2)
	q := req(orig, 100, "totp-1")
	_, err := s.Refunds.Request(ctx, q)
	assert.ErrorIs(t, err, refunds.ErrTOTP, "not enrolled")

	e, err := s.Refunds.EnrolTOTP(ctx, 1, "op")
	require.NoError(t, err)
	assert.Contains(t, e.URI, "otpauth://totp/shoudan:op?")
	var stored []byte
	require.NoError(t, s.Journal.Pool.QueryRow(ctx, "SELECT secret_enc FROM user_totp WHERE user_id=1").Scan(&stored))
	assert.NotContains(t, string(stored), e.Secret, "sealed, never in clear")
	code, err := totp.GenerateCode(e.Secret, time.Now())
	require.NoError(t, err)
	q.TOTP = code
	_, err = s.Refunds.Request(ctx, q)
	assert.ErrorIs(t, err, refunds.ErrTOTP, "enrolment not confirmed yet")
	require.NoError(t, s.Refunds.ConfirmTOTP(ctx, 1, code))

	q.TOTP = "000000"
	if code == "000000" {
		q.TOTP = "111111"
	}
	_, err = s.Refunds.Request(ctx, q)
	assert.ErrorIs(t, err, refunds.ErrTOTP, "a wrong code")
	q.TOTP = code
	_, err = s.Refunds.Request(ctx, q)
	assert.ErrorIs(t, err, refunds.ErrTOTP, "the code that confirmed the enrolment is used")

	next, err := totp.GenerateCode(e.Secret, time.Now().Add(30*time.Second))
	require.NoError(t, err)
	q.TOTP = next // the next step's code (one step of skew is accepted)
	r, err := s.Refunds.Request(ctx, q)
	require.NoError(t, err)
	assert.Equal(t, refunds.Succeeded, final(t, s, r).State)
	q.IdemKey = "totp-2"
	_, err = s.Refunds.Request(ctx, q)
	assert.ErrorIs(t, err, refunds.ErrTOTP, "a code works once")
}
