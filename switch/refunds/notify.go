package refunds

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/shoudan/shoudan/spec/money"
	"github.com/shoudan/shoudan/switch/journal"
)

// Notifications to merchant systems use the journal's own store-and-forward (the mechanism of
// the reversal queue), not a job-queue library such as river: a notification is inserted in the
// same statement that makes its cause final (so it exists exactly when the refund is final, and
// once: event_key is unique), the due rows are claimed with FOR UPDATE SKIP LOCKED and a lease,
// and every attempt is a row the console shows. That is one table and one loop over the
// database the switch already runs, with no second schema, leader election or worker runtime.

// NotifyConfig shapes delivery.
type NotifyConfig struct {
	Backoff    time.Duration // after a pass over every URL failed: Backoff, 2×, 4× … (15s)
	MaxBackoff time.Duration // the longest wait between passes (1h)
	Expiry     time.Duration // give up this long after the event (24h)
	Timeout    time.Duration // per HTTP attempt (5s)
	Lease      time.Duration // a claimed notification is reserved for its sender this long (3 × Timeout + 2s)
	Every      time.Duration // how often due notifications are looked for (200ms)
	// Keep is how long delivered and expired notifications (and their attempts) stay for the
	// console and the merchant API before they are deleted (30 days).
	Keep time.Duration
}

// DefaultNotify is the delivery schedule: about what 微信支付 does (15s, 15s, 30s, 3m … over 24h).
func DefaultNotify() NotifyConfig {
	return NotifyConfig{Backoff: 15 * time.Second, MaxBackoff: time.Hour, Expiry: 24 * time.Hour, Timeout: 5 * time.Second,
		Every: 200 * time.Millisecond, Keep: 30 * 24 * time.Hour}
}

func (c NotifyConfig) withDefaults() NotifyConfig {
	d := DefaultNotify()
	if c.Backoff <= 0 {
		c.Backoff = d.Backoff
	}
	if c.Keep <= 0 {
		c.Keep = d.Keep
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = d.MaxBackoff
	}
	if c.Expiry <= 0 {
		c.Expiry = d.Expiry
	}
	if c.Timeout <= 0 {
		c.Timeout = d.Timeout
	}
	if c.Lease <= 0 {
		c.Lease = 3*c.Timeout + 2*time.Second // one pass over three URLs
	}
	if c.Every <= 0 {
		c.Every = d.Every
	}
	return c
}

// Signature headers, on notifications and on merchant API requests.
const (
	HeaderKey       = "X-Shoudan-Key"
	HeaderTimestamp = "X-Shoudan-Timestamp"
	HeaderNonce     = "X-Shoudan-Nonce"
	HeaderSignature = "X-Shoudan-Signature"
)

// Sign is the hex HMAC-SHA256 under key of the parts joined by newlines. A notification signs
// timestamp, nonce and body; an API request timestamp, nonce, "METHOD path" and body.
func Sign(key []byte, parts ...string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(strings.Join(parts, "\n")))
	return hex.EncodeToString(m.Sum(nil))
}

// VerifyNotification checks a notification's signature with the merchant's key secret (hex), as
// a merchant's system does: it returns an error saying what does not match.
func VerifyNotification(secretHex string, h http.Header, body []byte) error {
	secret, err := hex.DecodeString(secretHex)
	if err != nil {
		return fmt.Errorf("key secret: expected hex, %v", err)
	}
	want := Sign(secret, h.Get(HeaderTimestamp), h.Get(HeaderNonce), string(body))
	if !hmac.Equal([]byte(want), []byte(h.Get(HeaderSignature))) {
		return fmt.Errorf("signature does not verify with this key")
	}
	return nil
}

func nonce() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Notice is the JSON body of a notification.
type Notice struct {
	Event   string   `json:"event"`
	ID      string   `json:"notification_id"` // = event key: the same event is never two notices
	At      string   `json:"created_at"`
	Refund  *Refund  `json:"refund,omitempty"`
	Payment *Payment `json:"payment,omitempty"`
}

// Payment is an approved purchase as notified.
type Payment struct {
	MerchantID string `json:"merchant_id"`
	TerminalID string `json:"terminal_id"`
	RRN        string `json:"rrn"`
	Date       string `json:"date"`
	Amount     string `json:"amount"`
	AmountFen  int64  `json:"amount_fen"`
	Card       string `json:"card"` // masked
	AuthCode   string `json:"auth_code"`
	Code       string `json:"code"`
}

func (s *Service) refundPayload(r *Refund) (string, string) {
	key := fmt.Sprintf("refund/%d/%s", r.ID, r.State)
	if r.State == PendingClearing {
		key = fmt.Sprintf("refund/%d/%s", r.ID, Succeeded)
	}
	b, _ := json.Marshal(Notice{Event: "refund." + strings.ReplaceAll(r.State, " ", "_"), ID: key, At: time.Now().UTC().Format(time.RFC3339), Refund: r})
	return string(b), key
}

// enqueueRefund queues the notification of a refund's final state (refused at approval,
// rejected), once.
func (s *Service) enqueueRefund(ctx context.Context, r *Refund) {
	payload, key := s.refundPayload(r)
	_, err := s.pool().Exec(ctx, `INSERT INTO notification (mid, event_key, event, payload, expires_at)
		SELECT $1, $2, $3, $4, now() + $5::interval FROM merchant_backoffice WHERE mid = $1 AND cardinality(callbacks) > 0
		ON CONFLICT (event_key) DO NOTHING`, r.MID, key, "refund."+r.State, payload, s.Notify.withDefaults().Expiry.String())
	if err != nil {
		s.Log.Warn("notification not queued", "refund", r.ID, "err", err)
	}
	s.notifyKick()
}

func (s *Service) notifyKick() {
	if s.nkick == nil {
		return
	}
	select {
	case s.nkick <- struct{}{}:
	default:
	}
}

// Notification is one notification as the console shows it.
type Notification struct {
	ID           int64
	MID          string
	EventKey     string
	Event        string
	Payload      string
	State        string
	Rounds       int
	NextAt       time.Time
	ExpiresAt    time.Time
	DeliveredAt  *time.Time
	DeliveredURL string
	Created      time.Time
	Attempts     []Attempt
}

// Attempt is one POST of a notification.
type Attempt struct {
	At     time.Time
	URL    string
	Status int
	Error  string
	MS     int
}

// Notifications lists a merchant's notifications ("" = all), newest first, with their attempts.
func (s *Service) Notifications(ctx context.Context, mid, eventKeyPrefix string, limit int) ([]*Notification, error) {
	if limit <= 0 || limit > 500 {
		limit = 100
	}
	rows, err := s.pool().Query(ctx, `SELECT id, mid, event_key, event, payload, state, rounds, next_at, expires_at, delivered_at, delivered_url, created_at
		FROM notification WHERE ($1 = '' OR mid = $1) AND event_key LIKE $2 || '%' ORDER BY id DESC LIMIT $3`, mid, eventKeyPrefix, limit)
	if err != nil {
		return nil, err
	}
	var out []*Notification
	byID := map[int64]*Notification{}
	for rows.Next() {
		var n Notification
		if err := rows.Scan(&n.ID, &n.MID, &n.EventKey, &n.Event, &n.Payload, &n.State, &n.Rounds, &n.NextAt, &n.ExpiresAt, &n.DeliveredAt, &n.DeliveredURL, &n.Created); err != nil {
			rows.Close()
			return nil, err
		}
		out = append(out, &n)
		byID[n.ID] = &n
	}
	rows.Close()
	if len(out) == 0 {
		return out, rows.Err()
	}
	ids := make([]int64, 0, len(out))
	for _, n := range out {
		ids = append(ids, n.ID)
	}
	ar, err := s.pool().Query(ctx, `SELECT notification_id, at, url, status, error, ms FROM notification_attempt WHERE notification_id = ANY($1) ORDER BY id`, ids)
	if err != nil {
		return nil, err
	}
	defer ar.Close()
	for ar.Next() {
		var id int64
		var a Attempt
		if err := ar.Scan(&id, &a.At, &a.URL, &a.Status, &a.Error, &a.MS); err != nil {
			return nil, err
		}
		byID[id].Attempts = append(byID[id].Attempts, a)
	}
	return out, ar.Err()
}

func (s *Service) runNotify(ctx context.Context) {
	cfg := s.Notify.withDefaults()
	t := time.NewTicker(cfg.Every)
	defer t.Stop()
	client := &http.Client{Timeout: cfg.Timeout, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	var pruned time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.nkick:
		}
		if time.Since(pruned) >= time.Hour {
			pruned = time.Now()
			if n, err := s.PruneNotifications(ctx, cfg.Keep); err != nil {
				s.Log.Warn("old notifications not deleted: tried again in an hour", "err", err.Error())
			} else if n > 0 {
				s.Log.Info("old notifications deleted", "count", n, "older_than", cfg.Keep.String())
			}
		}
		for s.paymentsDue(ctx) == paymentPage && ctx.Err() == nil { // catching up
		}
		for s.notifyDue(ctx, client, cfg) > 0 && ctx.Err() == nil {
		}
	}
}

type pendingNote struct {
	id        int64
	mid       string
	payload   string
	rounds    int
	expiresAt time.Time
}

func (s *Service) notifyDue(ctx context.Context, client *http.Client, cfg NotifyConfig) int {
	rows, err := s.pool().Query(ctx, `UPDATE notification SET next_at = now() + $2::interval
		WHERE id IN (SELECT id FROM notification WHERE state = 'pending' AND next_at <= now() ORDER BY id FOR UPDATE SKIP LOCKED LIMIT $1)
		RETURNING id, mid, payload, rounds, expires_at`, 16, cfg.Lease.String())
	if err != nil {
		return 0
	}
	var ns []pendingNote
	for rows.Next() {
		var n pendingNote
		if rows.Scan(&n.id, &n.mid, &n.payload, &n.rounds, &n.expiresAt) == nil {
			ns = append(ns, n)
		}
	}
	rows.Close()
	for _, n := range ns {
		s.notifyOne(ctx, client, cfg, n)
	}
	return len(ns)
}

// notifyOne makes one pass over the merchant's URLs, in order, until one acknowledges (2xx).
func (s *Service) notifyOne(ctx context.Context, client *http.Client, cfg NotifyConfig, n pendingNote) {
	set, err := s.Settings(ctx, n.mid)
	if err != nil {
		return // the lease makes it due again
	}
	keyID, secret, kerr := s.signingKey(ctx, n.mid)
	for _, u := range set.Callbacks {
		if ctx.Err() != nil {
			return
		}
		if kerr != nil {
			s.attempt(ctx, n.id, u, 0, "not sent: the merchant has no active API key to sign with", 0)
			break
		}
		status, why, ms := s.post(ctx, client, u, keyID, secret, n.payload)
		s.attempt(ctx, n.id, u, status, why, ms)
		if why == "" {
			_, err := s.pool().Exec(ctx, `UPDATE notification SET state='delivered', delivered_at=now(), delivered_url=$2 WHERE id=$1 AND state='pending'`, n.id, u)
			if err != nil {
				s.Log.Warn("notification delivered but not recorded: it will be sent again", "id", n.id, "err", err)
			}
			return
		}
	}
	rounds := n.rounds + 1
	wait := min(cfg.MaxBackoff, cfg.Backoff*time.Duration(1<<min(rounds-1, 20)))
	if time.Now().Add(wait).After(n.expiresAt) {
		_, _ = s.pool().Exec(ctx, `UPDATE notification SET state='expired', rounds=$2 WHERE id=$1 AND state='pending'`, n.id, rounds)
		s.Log.Warn("notification expired undelivered", "id", n.id, "mid", n.mid, "rounds", rounds)
		return
	}
	_, _ = s.pool().Exec(ctx, `UPDATE notification SET rounds=$2, next_at=now() + $3::interval WHERE id=$1 AND state='pending'`, n.id, rounds, wait.String())
}

func (s *Service) attempt(ctx context.Context, id int64, u string, status int, why string, ms int) {
	if len(why) > 300 {
		why = why[:300]
	}
	_, _ = s.pool().Exec(ctx, `INSERT INTO notification_attempt (notification_id, url, status, error, ms) VALUES ($1,$2,$3,$4,$5)`, id, u, status, why, ms)
}

// post sends one signed notification; why is "" when the receiver acknowledged it.
func (s *Service) post(ctx context.Context, client *http.Client, u, keyID string, secret []byte, payload string) (int, string, int) {
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	n := nonce()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader([]byte(payload)))
	if err != nil {
		return 0, err.Error(), 0
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(HeaderKey, keyID)
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderNonce, n)
	req.Header.Set(HeaderSignature, Sign(secret, ts, n, payload))
	start := time.Now()
	resp, err := client.Do(req)
	ms := int(time.Since(start).Milliseconds())
	if err != nil {
		return 0, err.Error(), ms
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp.StatusCode, fmt.Sprintf("answered HTTP %d", resp.StatusCode), ms
	}
	return resp.StatusCode, "", ms
}

// paymentsDue queues notifications of approved purchases of merchants that opted in. It follows
// txn by id from a cursor, and never moves past a purchase still pending (its outcome would be
// missed); one left pending longer than a minute (closed later by recovery) is passed.
func (s *Service) paymentsDue(ctx context.Context) int {
	var any bool
	if err := s.pool().QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM merchant_backoffice WHERE notify_payments AND cardinality(callbacks) > 0)`).Scan(&any); err != nil || !any {
		return 0
	}
	var after int64
	err := s.pool().QueryRow(ctx, `SELECT after FROM notify_cursor WHERE name = 'payments'`).Scan(&after)
	if err != nil {
		// start from now: payments before opting in are not notified
		if err := s.pool().QueryRow(ctx, `INSERT INTO notify_cursor (name, after) SELECT 'payments', coalesce(max(id), 0) FROM txn_request
			ON CONFLICT (name) DO UPDATE SET after = notify_cursor.after RETURNING after`).Scan(&after); err != nil {
			return 0
		}
	}
	rows, err := s.pool().Query(ctx, `SELECT id, kind, state, updated_at < now() - interval '1 minute' FROM txn WHERE id > $1 ORDER BY id LIMIT $2`, after, paymentPage)
	if err != nil {
		return 0
	}
	var ids []int64
	next := after
	scanned := 0
	for rows.Next() {
		scanned++
		var id int64
		var kind, state string
		var stale bool
		if rows.Scan(&id, &kind, &state, &stale) != nil {
			break
		}
		if state == "P" && !stale {
			break
		}
		next = id
		if kind == "purchase" && (state == "A" || state == "V") {
			ids = append(ids, id)
		}
	}
	rows.Close()
	var pays []*journal.Txn
	for _, id := range ids {
		if t, err := s.Journal.ByID(ctx, id); err == nil && t != nil {
			pays = append(pays, t)
		}
	}
	cfg := s.Notify.withDefaults()
	for _, t := range pays {
		p := Payment{MerchantID: t.MID, TerminalID: t.TID, RRN: t.RRN, Date: t.LocalDay.Format("2006-01-02"), Amount: money.Format(t.Amount),
			AmountFen: t.Amount, Card: t.PANMasked, AuthCode: t.AuthCode, Code: t.RespCode}
		key := fmt.Sprintf("payment/%d/approved", t.ID)
		b, _ := json.Marshal(Notice{Event: "payment.approved", ID: key, At: time.Now().UTC().Format(time.RFC3339), Payment: &p})
		_, _ = s.pool().Exec(ctx, `INSERT INTO notification (mid, event_key, event, payload, expires_at)
			SELECT $1, $2, 'payment.approved', $3, now() + $4::interval FROM merchant_backoffice WHERE mid = $1 AND notify_payments AND cardinality(callbacks) > 0
			ON CONFLICT (event_key) DO NOTHING`, t.MID, key, string(b), cfg.Expiry.String())
	}
	if next > after {
		_, _ = s.pool().Exec(ctx, `UPDATE notify_cursor SET after = $1 WHERE name = 'payments' AND after < $1`, next)
	}
	if next == after {
		return 0 // held by a pending purchase: wait for its outcome
	}
	return scanned
}

// paymentPage is how many journal rows one pass of the payment notifier reads.
const paymentPage = 500

// PruneNotifications deletes notifications that are no longer pending and were created more
// than keep ago, with their attempts, in batches (a pending one is never deleted: it is still
// being delivered or waits for its expiry). It returns how many notifications went.
func (s *Service) PruneNotifications(ctx context.Context, keep time.Duration) (int64, error) {
	var total int64
	for ctx.Err() == nil {
		var n int64
		err := s.pool().QueryRow(ctx, `WITH old AS (
				SELECT id FROM notification WHERE state <> 'pending' AND created_at < now() - $1::interval ORDER BY id LIMIT 5000),
			a AS (DELETE FROM notification_attempt WHERE notification_id IN (SELECT id FROM old)),
			d AS (DELETE FROM notification WHERE id IN (SELECT id FROM old) RETURNING 1)
			SELECT count(*) FROM d`, fmt.Sprintf("%d seconds", int64(keep.Seconds()))).Scan(&n)
		if err != nil {
			return total, err
		}
		total += n
		if n < 5000 {
			break
		}
	}
	return total, nil
}
