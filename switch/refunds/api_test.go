package refunds_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	rc "github.com/shoudan/shoudan/responsecodes"
	"github.com/shoudan/shoudan/switch/refunds"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// apiCall is one signed request as a merchant's system makes it.
type apiCall struct {
	base, keyID, secret string
	ts                  time.Time
	nonce               string
	sign                func(secret []byte, parts ...string) string
}

func (c apiCall) do(t *testing.T, path string, body any) (int, map[string]any, []byte) {
	t.Helper()
	b, _ := json.Marshal(body)
	secret, _ := hex.DecodeString(c.secret)
	ts := c.ts
	if ts.IsZero() {
		ts = time.Now()
	}
	n := c.nonce
	if n == "" {
		n = strconv.FormatInt(time.Now().UnixNano(), 36) + "-nonce"
	}
	tss := strconv.FormatInt(ts.Unix(), 10)
	q, err := http.NewRequest(http.MethodPost, c.base+path, bytes.NewReader(b))
	require.NoError(t, err)
	q.Header.Set(refunds.HeaderKey, c.keyID)
	q.Header.Set(refunds.HeaderTimestamp, tss)
	q.Header.Set(refunds.HeaderNonce, n)
	sign := c.sign
	if sign == nil {
		sign = refunds.Sign
	}
	q.Header.Set(refunds.HeaderSignature, sign(secret, tss, n, "POST "+path, string(b)))
	resp, err := http.DefaultClient.Do(q)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	return resp.StatusCode, m, raw
}

// TestMerchantAPI: a signed refund request works and is idempotent by out_refund_no; the refund
// and the transaction can be queried; a bad signature, an old timestamp and a replayed request
// are refused and change nothing.
func TestMerchantAPI(t *testing.T) {
	s := start(t)
	ctx := t.Context()
	require.NotEmpty(t, s.MerchantAPI, "the merchant API listens")
	key, err := s.Refunds.CreateKey(ctx, mid, "admin")
	require.NoError(t, err)
	other, err := s.Refunds.CreateKey(ctx, "898310053110002", "admin")
	require.NoError(t, err)
	orig := purchase(t, s, 10000, 4)
	before := balance(s)
	c := apiCall{base: "http://" + s.MerchantAPI, keyID: key.ID, secret: key.Secret}
	body := map[string]any{"out_refund_no": "ORD-1-R1", "original_rrn": orig.RRN, "original_date": orig.LocalDay.Format("2006-01-02"), "amount": "25.50", "reason": "size"}

	st, m, raw := c.do(t, "/v1/refunds", body)
	require.Equal(t, 200, st, "%s", raw)
	assert.Equal(t, "succeeded", m["state"], "%s", raw)
	assert.Equal(t, rc.Approved, m["code"])
	assert.Equal(t, "25.50", m["amount"])
	assert.Equal(t, before+2550, balance(s))
	id := m["refund_id"]

	st, m, _ = c.do(t, "/v1/refunds", body)
	require.Equal(t, 200, st)
	assert.Equal(t, id, m["refund_id"], "the same out_refund_no is the same refund")
	assert.Equal(t, before+2550, balance(s))
	body2 := map[string]any{"out_refund_no": "ORD-1-R1", "original_rrn": orig.RRN, "original_date": orig.LocalDay.Format("2006-01-02"), "amount": "1.00"}
	st, m, _ = c.do(t, "/v1/refunds", body2)
	assert.Equal(t, http.StatusConflict, st, "%v", m)

	st, m, _ = c.do(t, "/v1/refunds/query", map[string]any{"out_refund_no": "ORD-1-R1"})
	require.Equal(t, 200, st)
	assert.Equal(t, "succeeded", m["state"])
	st, m, raw = c.do(t, "/v1/transactions/query", map[string]any{"rrn": orig.RRN, "date": orig.LocalDay.Format("2006-01-02")})
	require.Equal(t, 200, st, "%s", raw)
	assert.Equal(t, "approved", m["state"])
	assert.Equal(t, "100.00", m["amount"])
	assert.Equal(t, "25.50", m["refunded"])
	assert.Len(t, m["refunds"], 1)
	assert.NotContains(t, string(raw), goodPAN)

	over := map[string]any{"out_refund_no": "ORD-1-R2", "original_rrn": orig.RRN, "original_date": orig.LocalDay.Format("2006-01-02"), "amount": "80.00"}
	st, m, _ = c.do(t, "/v1/refunds", over)
	require.Equal(t, 200, st)
	assert.Equal(t, "failed", m["state"])
	assert.Equal(t, rc.InvalidAmount, m["code"])
	assert.Contains(t, m["message"], "exceeds what is left")

	// another merchant's key cannot see or refund this merchant's transactions
	oc := apiCall{base: c.base, keyID: other.ID, secret: other.Secret}
	st, _, _ = oc.do(t, "/v1/refunds/query", map[string]any{"out_refund_no": "ORD-1-R1"})
	assert.Equal(t, http.StatusNotFound, st)
	st, _, _ = oc.do(t, "/v1/transactions/query", map[string]any{"rrn": orig.RRN, "date": orig.LocalDay.Format("2006-01-02")})
	assert.Equal(t, http.StatusNotFound, st)

	refused := func(name string, call apiCall, want string) {
		b := map[string]any{"out_refund_no": "ORD-X-" + name, "original_rrn": orig.RRN, "original_date": orig.LocalDay.Format("2006-01-02"), "amount": "1.00"}
		st, m, raw := call.do(t, "/v1/refunds", b)
		assert.Equal(t, http.StatusUnauthorized, st, "%s: %s", name, raw)
		assert.Contains(t, m["message"], want, name)
		_, err := s.Refunds.ByKey(ctx, mid, "ORD-X-"+name)
		assert.ErrorIs(t, err, refunds.ErrNotFound, "%s: nothing made", name)
	}
	bad := c
	bad.sign = func(secret []byte, parts ...string) string { return refunds.Sign([]byte("not the key"), parts...) }
	refused("badsig", bad, "signature does not verify")
	wrongKey := c
	wrongKey.secret = other.Secret
	refused("otherkey", wrongKey, "signature does not verify")
	old := c
	old.ts = time.Now().Add(-10 * time.Minute)
	refused("old", old, "away from the switch's clock")
	replay := c
	replay.nonce = "nonce-used-once"
	st, _, _ = replay.do(t, "/v1/refunds/query", map[string]any{"out_refund_no": "ORD-1-R1"})
	require.Equal(t, 200, st, "first use of the nonce")
	refused("replay", replay, "replayed request")
	assert.Equal(t, before+2550, balance(s), "nothing refused was refunded")
}
