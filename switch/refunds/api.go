package refunds

import (
	"bytes"
	"context"
	"crypto/hmac"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/shoudan/shoudan/spec/money"
	"github.com/shoudan/shoudan/switch/journal"
)

// The merchant API: HTTP JSON on its own listener (merchant_api.addr, loopback by default), not
// under the console's: it is called by merchants' servers, not browsers (no cookies, no CSRF,
// no sessions), is exposed and rate-limited differently (a partner network or a gateway in
// front), and can be switched off without touching the console.
//
// Every request is signed: headers X-Shoudan-Key (the key id), X-Shoudan-Timestamp (Unix
// seconds), X-Shoudan-Nonce (unique per request, 8-64 characters) and X-Shoudan-Signature, the
// hex HMAC-SHA256 under the key's secret of timestamp, nonce, "METHOD path" and the body, joined
// by newlines. A timestamp further than Window from the switch's clock, a nonce already seen
// and a signature that does not verify are refused (401) before anything else is read.

// API serves the merchant API.
type API struct {
	Svc    *Service
	Window time.Duration // accepted clock difference (5 minutes)
	Log    *slog.Logger
}

// APIError is the body of every refusal.
type APIError struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

// RefundRequest is POST /v1/refunds.
type RefundRequest struct {
	OutRefundNo  string `json:"out_refund_no"` // the merchant's idempotency key
	Kind         string `json:"kind"`          // refund (default) or void
	OriginalRRN  string `json:"original_rrn"`
	OriginalDate string `json:"original_date"` // YYYY-MM-DD
	Amount       string `json:"amount"`        // yuan, e.g. "12.34"
	Reason       string `json:"reason"`
}

// QueryRequest is POST /v1/refunds/query (out_refund_no or refund_id) and
// /v1/transactions/query (rrn and date).
type QueryRequest struct {
	OutRefundNo string `json:"out_refund_no"`
	RefundID    int64  `json:"refund_id"`
	RRN         string `json:"rrn"`
	Date        string `json:"date"`
}

// TxnResult is a transaction as the API shows it.
type TxnResult struct {
	MerchantID string    `json:"merchant_id"`
	TerminalID string    `json:"terminal_id"`
	RRN        string    `json:"rrn"`
	Date       string    `json:"date"`
	Kind       string    `json:"kind"`
	State      string    `json:"state"`
	Code       string    `json:"code"`
	Message    string    `json:"message"`
	Amount     string    `json:"amount"`
	Refunded   string    `json:"refunded"`
	Card       string    `json:"card"`
	AuthCode   string    `json:"auth_code"`
	Refunds    []*Refund `json:"refunds"`
}

func (a *API) window() time.Duration {
	if a.Window <= 0 {
		return 5 * time.Minute
	}
	return a.Window
}

func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10+1))
	if err != nil || len(body) > 64<<10 {
		writeJSON(w, http.StatusRequestEntityTooLarge, APIError{"too_large", "the body must be at most 64 KiB"})
		return
	}
	mid, err := a.authenticate(r, body)
	if err != nil {
		a.Log.Warn("merchant API: request refused", "path", r.URL.Path, "key", r.Header.Get(HeaderKey), "from", r.RemoteAddr, "why", err.Error())
		writeJSON(w, http.StatusUnauthorized, APIError{"unauthorized", err.Error()})
		return
	}
	if r.Method != http.MethodPost {
		writeJSON(w, http.StatusMethodNotAllowed, APIError{"method", "expected POST"})
		return
	}
	switch r.URL.Path {
	case "/v1/refunds":
		a.refund(w, r, mid, body)
	case "/v1/refunds/query":
		a.queryRefund(w, r, mid, body)
	case "/v1/transactions/query":
		a.queryTxn(w, r, mid, body)
	default:
		writeJSON(w, http.StatusNotFound, APIError{"not_found", "no such endpoint: " + r.URL.Path})
	}
}

// authenticate verifies the signature, then the timestamp, then records the nonce (a replay is
// refused); it returns the key's merchant.
func (a *API) authenticate(r *http.Request, body []byte) (string, error) {
	keyID, ts, n, sig := r.Header.Get(HeaderKey), r.Header.Get(HeaderTimestamp), r.Header.Get(HeaderNonce), r.Header.Get(HeaderSignature)
	if keyID == "" || ts == "" || n == "" || sig == "" {
		return "", fmt.Errorf("expected the headers %s, %s, %s and %s", HeaderKey, HeaderTimestamp, HeaderNonce, HeaderSignature)
	}
	if len(n) < 8 || len(n) > 64 {
		return "", fmt.Errorf("%s: expected 8-64 characters, found %d", HeaderNonce, len(n))
	}
	ctx := r.Context()
	mid, secret, err := a.Svc.keySecret(ctx, keyID)
	if err != nil {
		return "", fmt.Errorf("unknown or revoked key %q", keyID)
	}
	want := Sign(secret, ts, n, r.Method+" "+r.URL.Path, string(body))
	if !hmac.Equal([]byte(want), []byte(sig)) {
		return "", errors.New("signature does not verify")
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return "", fmt.Errorf("%s: expected Unix seconds, found %q", HeaderTimestamp, ts)
	}
	if d := time.Since(time.Unix(sec, 0)); d > a.window() || d < -a.window() {
		return "", fmt.Errorf("timestamp %s is %s away from the switch's clock (at most %s accepted)", ts, d.Round(time.Second), a.window())
	}
	ct, err := a.Svc.pool().Exec(ctx, `INSERT INTO api_nonce (key_id, nonce) VALUES ($1,$2) ON CONFLICT DO NOTHING`, keyID, n)
	if err != nil {
		return "", fmt.Errorf("%w: %v", journal.ErrUnavailable, err)
	}
	if ct.RowsAffected() == 0 {
		return "", errors.New("replayed request: this nonce was already used")
	}
	return mid, nil
}

// PruneNonces forgets nonces older than twice the window (a request that old is refused by its
// timestamp anyway).
func (a *API) PruneNonces(ctx context.Context) {
	_, _ = a.Svc.pool().Exec(ctx, `DELETE FROM api_nonce WHERE at < now() - $1::interval`, (2 * a.window()).String())
}

func (a *API) refund(w http.ResponseWriter, r *http.Request, mid string, body []byte) {
	var q RefundRequest
	if err := strictJSON(body, &q); err != nil {
		writeJSON(w, http.StatusBadRequest, APIError{"bad_request", err.Error()})
		return
	}
	day, err := time.ParseInLocation("2006-01-02", q.OriginalDate, time.Local)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, APIError{"bad_request", fmt.Sprintf("original_date: expected YYYY-MM-DD, found %q", q.OriginalDate)})
		return
	}
	var amount int64
	if q.Amount != "" || q.Kind != "void" {
		if amount, err = money.Positive(q.Amount); err != nil {
			writeJSON(w, http.StatusBadRequest, APIError{"bad_request", "amount: " + err.Error()})
			return
		}
	}
	keyID := r.Header.Get(HeaderKey)
	ref, err := a.Svc.Request(r.Context(), Request{MID: mid, Kind: q.Kind, OrigRRN: q.OriginalRRN, OrigDay: day, Amount: amount, Reason: q.Reason,
		IdemKey: q.OutRefundNo, Source: FromAPI, By: Actor{Name: "api:" + keyID}, Direct: true})
	switch {
	case errors.Is(err, ErrIdempotency):
		writeJSON(w, http.StatusConflict, APIError{"idempotency_conflict", err.Error()})
		return
	case err != nil:
		writeJSON(w, http.StatusBadRequest, APIError{"bad_request", err.Error()})
		return
	}
	if ref.ID != 0 && !ref.Final {
		if got, err := a.Svc.Wait(r.Context(), ref.ID, 3*time.Second); err == nil {
			ref = got
		}
	}
	writeJSON(w, http.StatusOK, ref)
}

func (a *API) queryRefund(w http.ResponseWriter, r *http.Request, mid string, body []byte) {
	var q QueryRequest
	if err := strictJSON(body, &q); err != nil {
		writeJSON(w, http.StatusBadRequest, APIError{"bad_request", err.Error()})
		return
	}
	var ref *Refund
	var err error
	switch {
	case q.OutRefundNo != "":
		ref, err = a.Svc.ByKey(r.Context(), mid, q.OutRefundNo)
	case q.RefundID != 0:
		ref, err = a.Svc.Get(r.Context(), mid, q.RefundID)
	default:
		writeJSON(w, http.StatusBadRequest, APIError{"bad_request", "expected out_refund_no or refund_id"})
		return
	}
	if errors.Is(err, ErrNotFound) {
		writeJSON(w, http.StatusNotFound, APIError{"not_found", "no such refund of merchant " + mid})
		return
	}
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, APIError{"unavailable", err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, ref)
}

func (a *API) queryTxn(w http.ResponseWriter, r *http.Request, mid string, body []byte) {
	var q QueryRequest
	if err := strictJSON(body, &q); err != nil {
		writeJSON(w, http.StatusBadRequest, APIError{"bad_request", err.Error()})
		return
	}
	day, err := time.ParseInLocation("2006-01-02", q.Date, time.Local)
	if err != nil || q.RRN == "" {
		writeJSON(w, http.StatusBadRequest, APIError{"bad_request", "expected rrn and date (YYYY-MM-DD)"})
		return
	}
	t, err := a.Svc.Journal.ForRefund(r.Context(), mid, q.RRN, day)
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, APIError{"unavailable", err.Error()})
		return
	}
	if t == nil {
		writeJSON(w, http.StatusNotFound, APIError{"not_found", fmt.Sprintf("no purchase of merchant %s with RRN %s on %s", mid, q.RRN, q.Date)})
		return
	}
	refs, err := a.Svc.List(r.Context(), Filter{MID: mid, OrigID: t.ID})
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, APIError{"unavailable", err.Error()})
		return
	}
	if refs == nil {
		refs = []*Refund{}
	}
	writeJSON(w, http.StatusOK, TxnResult{MerchantID: t.MID, TerminalID: t.TID, RRN: t.RRN, Date: t.LocalDay.Format("2006-01-02"), Kind: t.Kind,
		State: StateName(t.State), Code: t.RespCode, Message: t.Reason, Amount: money.Format(t.Amount), Refunded: money.Format(t.Refunded),
		Card: t.PANMasked, AuthCode: t.AuthCode, Refunds: refs})
}

// StateName is a journal state in words.
func StateName(s byte) string {
	switch s {
	case journal.Pending:
		return "pending"
	case journal.Approved:
		return "approved"
	case journal.Declined:
		return "declined"
	case journal.Voided:
		return "voided"
	case journal.Reversed:
		return "reversed"
	case journal.TimedOut:
		return "timed_out"
	}
	return string(s)
}

func strictJSON(body []byte, v any) error {
	d := json.NewDecoder(bytesReader(body))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return fmt.Errorf("body: expected a JSON object of the documented fields: %v", err)
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Serve runs the API on ln until ctx ends (and prunes old nonces meanwhile).
func (a *API) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: a, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second}
	go func() {
		t := time.NewTicker(time.Minute)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				_ = srv.Close()
				return
			case <-t.C:
				a.PruneNonces(ctx)
			}
		}
	}()
	err := srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }
