package refunds_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoudan/shoudan/switch/refunds"
	"github.com/shoudan/shoudan/switch/switchtest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// receiver is a merchant's notification endpoint on loopback: it answers the statuses queued
// (then 200) and keeps what it received.
type receiver struct {
	*httptest.Server
	mu       sync.Mutex
	statuses []int
	got      []received
	hits     atomic.Int64
}

type received struct {
	header http.Header
	body   []byte
	status int
}

func newReceiver(t *testing.T, statuses ...int) *receiver {
	r := &receiver{statuses: statuses}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, q *http.Request) {
		b, _ := io.ReadAll(q.Body)
		r.mu.Lock()
		st := 200
		if len(r.statuses) > 0 {
			st, r.statuses = r.statuses[0], r.statuses[1:]
		}
		r.got = append(r.got, received{q.Header.Clone(), b, st})
		r.mu.Unlock()
		r.hits.Add(1)
		w.WriteHeader(st)
		fmt.Fprint(w, `{"code":"SUCCESS"}`)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) acked() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []received
	for _, g := range r.got {
		if g.status == 200 {
			out = append(out, g)
		}
	}
	return out
}

func eventually(t *testing.T, d time.Duration, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func notifications(t *testing.T, s *switchtest.Switch, r *refunds.Refund) []*refunds.Notification {
	ns, err := s.Refunds.Notifications(t.Context(), mid, fmt.Sprintf("refund/%d/", r.ID), 10)
	require.NoError(t, err)
	return ns
}

// TestNotifyFirstURLDown: the first URL refuses connections, the second gets the notification;
// both attempts are recorded.
func TestNotifyFirstURLDown(t *testing.T) {
	s := start(t)
	ctx := t.Context()
	down := "http://" + switchtest.FreePort(t) + "/notify" // nothing listens there
	second := newReceiver(t)
	key, err := s.Refunds.CreateKey(ctx, mid, "admin")
	require.NoError(t, err)
	require.NoError(t, s.Refunds.SaveSettings(ctx, &refunds.Settings{MID: mid, Callbacks: []string{down, second.URL + "/n2"}}, "admin"))
	orig := purchase(t, s, 5000, 2)
	r, err := s.Refunds.Request(ctx, req(orig, 1234, "n-1"))
	require.NoError(t, err)
	r = final(t, s, r)
	eventually(t, 5*time.Second, "the second URL acknowledges", func() bool { return len(second.acked()) == 1 })
	got := second.acked()[0]
	require.NoError(t, refunds.VerifyNotification(key.Secret, got.header, got.body), "signed with the merchant key")
	var n refunds.Notice
	require.NoError(t, json.Unmarshal(got.body, &n))
	assert.Equal(t, "refund.succeeded", n.Event)
	assert.Equal(t, r.ID, n.Refund.ID)
	assert.Equal(t, "12.34", n.Refund.AmountString)
	assert.Equal(t, "n-1", n.Refund.IdemKey)
	eventually(t, 2*time.Second, "delivery recorded", func() bool {
		ns := notifications(t, s, r)
		return len(ns) == 1 && ns[0].State == "delivered"
	})
	ns := notifications(t, s, r)
	require.Len(t, ns[0].Attempts, 2)
	assert.Equal(t, down, ns[0].Attempts[0].URL)
	assert.Equal(t, 0, ns[0].Attempts[0].Status)
	assert.NotEmpty(t, ns[0].Attempts[0].Error, "the refused connection is recorded")
	assert.Equal(t, 200, ns[0].Attempts[1].Status)
	assert.Equal(t, second.URL+"/n2", ns[0].DeliveredURL)
}

// TestNotifyRetries: the receiver answers 500 three times, then 200: exactly one acknowledged
// delivery, four attempts recorded, on the backoff schedule.
func TestNotifyRetries(t *testing.T) {
	s := start(t)
	ctx := t.Context()
	rcv := newReceiver(t, 500, 500, 500)
	_, err := s.Refunds.CreateKey(ctx, mid, "admin")
	require.NoError(t, err)
	require.NoError(t, s.Refunds.SaveSettings(ctx, &refunds.Settings{MID: mid, Callbacks: []string{rcv.URL}}, "admin"))
	orig := purchase(t, s, 5000, 2)
	r, err := s.Refunds.Request(ctx, req(orig, 100, "n-2"))
	require.NoError(t, err)
	final(t, s, r)
	eventually(t, 10*time.Second, "acknowledged", func() bool { return len(rcv.acked()) == 1 })
	time.Sleep(1200 * time.Millisecond) // more than the longest backoff: nothing more comes
	assert.Equal(t, int64(4), rcv.hits.Load(), "500, 500, 500, 200 and nothing after")
	assert.Len(t, rcv.acked(), 1)
	ns := notifications(t, s, r)
	require.Len(t, ns, 1)
	assert.Equal(t, "delivered", ns[0].State)
	require.Len(t, ns[0].Attempts, 4)
	for i, want := range []int{500, 500, 500, 200} {
		assert.Equal(t, want, ns[0].Attempts[i].Status, "attempt %d", i+1)
	}
	gap := ns[0].Attempts[3].At.Sub(ns[0].Attempts[2].At)
	assert.GreaterOrEqual(t, gap, 300*time.Millisecond, "backed off (100ms, 200ms, 400ms)")
}

// TestNotifySignature: a notification verifies with its merchant's key and not with another.
func TestNotifySignature(t *testing.T) {
	s := start(t)
	ctx := t.Context()
	rcv := newReceiver(t)
	key, err := s.Refunds.CreateKey(ctx, mid, "admin")
	require.NoError(t, err)
	other, err := s.Refunds.CreateKey(ctx, "898310053110002", "admin")
	require.NoError(t, err)
	require.NoError(t, s.Refunds.SaveSettings(ctx, &refunds.Settings{MID: mid, Callbacks: []string{rcv.URL}}, "admin"))
	orig := purchase(t, s, 700, 1)
	r, err := s.Refunds.Request(ctx, req(orig, 700, "n-3"))
	require.NoError(t, err)
	final(t, s, r)
	eventually(t, 5*time.Second, "delivered", func() bool { return len(rcv.acked()) == 1 })
	got := rcv.acked()[0]
	assert.Equal(t, key.ID, got.header.Get(refunds.HeaderKey))
	assert.NoError(t, refunds.VerifyNotification(key.Secret, got.header, got.body))
	assert.Error(t, refunds.VerifyNotification(other.Secret, got.header, got.body), "another merchant's key")
	tampered := bytes.Replace(got.body, []byte(`"amount":"7.00"`), []byte(`"amount":"70.00"`), 1)
	require.NotEqual(t, got.body, tampered)
	assert.Error(t, refunds.VerifyNotification(key.Secret, got.header, tampered), "a changed body")
	ts, _ := strconv.ParseInt(got.header.Get(refunds.HeaderTimestamp), 10, 64)
	assert.InDelta(t, time.Now().Unix(), ts, 30)
}

// TestNotifyPayments: a merchant that opted in is notified of approved purchases.
func TestNotifyPayments(t *testing.T) {
	s := start(t)
	ctx := t.Context()
	rcv := newReceiver(t)
	_, err := s.Refunds.CreateKey(ctx, mid, "admin")
	require.NoError(t, err)
	require.NoError(t, s.Refunds.SaveSettings(ctx, &refunds.Settings{MID: mid, Callbacks: []string{rcv.URL}, NotifyPayments: true}, "admin"))
	time.Sleep(400 * time.Millisecond) // the cursor starts at opting in
	p := purchase(t, s, 2500, 0)
	eventually(t, 5*time.Second, "the payment is notified", func() bool { return len(rcv.acked()) == 1 })
	var n refunds.Notice
	require.NoError(t, json.Unmarshal(rcv.acked()[0].body, &n))
	assert.Equal(t, "payment.approved", n.Event)
	require.NotNil(t, n.Payment)
	assert.Equal(t, p.RRN, n.Payment.RRN)
	assert.Equal(t, "25.00", n.Payment.Amount)
	assert.Equal(t, p.PANMasked, n.Payment.Card, "masked")
	assert.NotContains(t, string(rcv.acked()[0].body), goodPAN)
}

// TestNotificationsPrunedAfterKeep: delivered and expired notifications older than the keep
// period go with their attempts; a recent one and an old one still pending stay. The rows are
// younger than the switch's own keep (30 days), so that its hourly prune, whose first round can
// come at any moment of the test, leaves them to the call under test.
func TestNotificationsPrunedAfterKeep(t *testing.T) {
	s := start(t)
	ctx := t.Context()
	pool := s.Journal.Pool
	for _, n := range []struct {
		key, state string
		age        string
	}{{"old-delivered", "delivered", "20 days"}, {"old-expired", "expired", "15 days"}, {"old-pending", "pending", "20 days"}, {"new-delivered", "delivered", "2 days"}} {
		var id int64
		require.NoError(t, pool.QueryRow(ctx, `INSERT INTO notification (mid, event_key, event, payload, state, expires_at, created_at)
			VALUES ($1, $2, 'refund.succeeded', '{}', $3, now(), now() - $4::interval) RETURNING id`, mid, "test/"+n.key, n.state, n.age).Scan(&id))
		_, err := pool.Exec(ctx, `INSERT INTO notification_attempt (notification_id, url, status) VALUES ($1, 'http://127.0.0.1:1/', 200)`, id)
		require.NoError(t, err)
	}
	n, err := s.Refunds.PruneNotifications(ctx, 10*24*time.Hour)
	require.NoError(t, err)
	require.Equal(t, int64(2), n)
	rows, err := pool.Query(ctx, `SELECT event_key FROM notification WHERE event_key LIKE 'test/%' ORDER BY event_key`)
	require.NoError(t, err)
	var left []string
	for rows.Next() {
		var k string
		require.NoError(t, rows.Scan(&k))
		left = append(left, k)
	}
	require.Equal(t, []string{"test/new-delivered", "test/old-pending"}, left)
	var orphans int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM notification_attempt a LEFT JOIN notification n ON n.id = a.notification_id WHERE n.id IS NULL`).Scan(&orphans))
	require.Zero(t, orphans)
}
