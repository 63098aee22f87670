package refunds

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
)

// Settings are a merchant's back-office settings. They live in a table of their own, not in the
// registry: none is an input of the terminal's decision path, they are changed by the merchant's
// own admin (the registry by the acquirer), and callback URLs and API keys are integration data
// of the merchant's systems that do not belong in the registry's YAML export.
type Settings struct {
	MID            string
	Review         bool     // refunds are applications a reviewer approves
	TOTPRequired   bool     // console refunds need the dynamic password
	Callbacks      []string // up to three, tried in order
	NotifyPayments bool
	UpdatedBy      string
	UpdatedAt      time.Time
}

// Settings returns a merchant's settings (the defaults when none are stored: direct, no TOTP,
// no callbacks).
func (s *Service) Settings(ctx context.Context, mid string) (*Settings, error) {
	st := &Settings{MID: mid}
	err := s.pool().QueryRow(ctx, `SELECT review, totp_required, callbacks, notify_payments, updated_by, updated_at FROM merchant_backoffice WHERE mid = $1`, mid).
		Scan(&st.Review, &st.TOTPRequired, &st.Callbacks, &st.NotifyPayments, &st.UpdatedBy, &st.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return st, nil
	}
	return st, err
}

// CheckSettings validates settings: at most three absolute http(s) URLs without credentials.
func CheckSettings(st *Settings) error {
	if len(st.Callbacks) > 3 {
		return fmt.Errorf("callbacks: at most 3 URLs, found %d", len(st.Callbacks))
	}
	for i, u := range st.Callbacks {
		p, err := url.Parse(u)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return fmt.Errorf("callbacks[%d]: expected an absolute http(s) URL, found %q", i, u)
		}
		if p.User != nil {
			return fmt.Errorf("callbacks[%d]: no credentials in the URL (notifications are signed with the merchant key)", i)
		}
	}
	return nil
}

// SaveSettings validates and stores a merchant's settings.
func (s *Service) SaveSettings(ctx context.Context, st *Settings, by string) error {
	var urls []string
	for _, u := range st.Callbacks {
		if u = strings.TrimSpace(u); u != "" {
			urls = append(urls, u)
		}
	}
	st.Callbacks = urls
	if st.Callbacks == nil {
		st.Callbacks = []string{}
	}
	if err := CheckSettings(st); err != nil {
		return err
	}
	_, err := s.pool().Exec(ctx, `INSERT INTO merchant_backoffice (mid, review, totp_required, callbacks, notify_payments, updated_by, updated_at)
		VALUES ($1,$2,$3,$4,$5,$6,now())
		ON CONFLICT (mid) DO UPDATE SET review=$2, totp_required=$3, callbacks=$4, notify_payments=$5, updated_by=$6, updated_at=now()`,
		st.MID, st.Review, st.TOTPRequired, st.Callbacks, st.NotifyPayments, by)
	if err == nil {
		_, _ = s.pool().Exec(ctx, `INSERT INTO audit_log (login, mid, action, detail) VALUES ($1,$2,'config_change',$3)`, by, st.MID,
			fmt.Sprintf("refund settings: review=%v totp=%v callbacks=%d notify_payments=%v", st.Review, st.TOTPRequired, len(st.Callbacks), st.NotifyPayments))
	}
	return err
}

// APIKey is a merchant API key (the secret only at creation).
type APIKey struct {
	ID        string
	MID       string
	Secret    string // hex; shown once
	CreatedAt time.Time
	CreatedBy string
	Revoked   bool
}

// CreateKey makes a merchant API key; its secret is returned once and kept sealed.
func (s *Service) CreateKey(ctx context.Context, mid, by string) (*APIKey, error) {
	id := make([]byte, 8)
	secret := make([]byte, 32)
	_, _ = rand.Read(id)
	_, _ = rand.Read(secret)
	k := &APIKey{ID: "mk_" + hex.EncodeToString(id), MID: mid, Secret: hex.EncodeToString(secret), CreatedBy: by}
	err := s.pool().QueryRow(ctx, `INSERT INTO merchant_api_key (key_id, mid, secret_enc, created_by) VALUES ($1,$2,$3,$4) RETURNING created_at`,
		k.ID, mid, s.Journal.Vault.Seal(secret), by).Scan(&k.CreatedAt)
	if err != nil {
		return nil, err
	}
	_, _ = s.pool().Exec(ctx, `INSERT INTO audit_log (login, mid, action, detail) VALUES ($1,$2,'api_key_add',$3)`, by, mid, k.ID)
	return k, nil
}

// Keys lists a merchant's keys (no secrets).
func (s *Service) Keys(ctx context.Context, mid string) ([]APIKey, error) {
	rows, err := s.pool().Query(ctx, `SELECT key_id, mid, created_at, created_by, revoked_at IS NOT NULL FROM merchant_api_key WHERE mid=$1 ORDER BY created_at DESC`, mid)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []APIKey
	for rows.Next() {
		var k APIKey
		if err := rows.Scan(&k.ID, &k.MID, &k.CreatedAt, &k.CreatedBy, &k.Revoked); err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// RevokeKey stops a key from signing.
func (s *Service) RevokeKey(ctx context.Context, mid, id, by string) error {
	ct, err := s.pool().Exec(ctx, `UPDATE merchant_api_key SET revoked_at = now() WHERE key_id=$1 AND mid=$2 AND revoked_at IS NULL`, id, mid)
	if err == nil && ct.RowsAffected() == 0 {
		return fmt.Errorf("no active key %s of merchant %s", id, mid)
	}
	if err == nil {
		_, _ = s.pool().Exec(ctx, `INSERT INTO audit_log (login, mid, action, detail) VALUES ($1,$2,'api_key_revoke',$3)`, by, mid, id)
	}
	return err
}

// keySecret opens an active key: its merchant and secret.
func (s *Service) keySecret(ctx context.Context, id string) (string, []byte, error) {
	var mid string
	var enc []byte
	err := s.pool().QueryRow(ctx, `SELECT mid, secret_enc FROM merchant_api_key WHERE key_id=$1 AND revoked_at IS NULL`, id).Scan(&mid, &enc)
	if err != nil {
		return "", nil, err
	}
	secret, err := s.Journal.Vault.Open(enc)
	return mid, secret, err
}

// signingKey is the merchant's newest active key (notifications are signed with it).
func (s *Service) signingKey(ctx context.Context, mid string) (string, []byte, error) {
	var id string
	var enc []byte
	err := s.pool().QueryRow(ctx, `SELECT key_id, secret_enc FROM merchant_api_key WHERE mid=$1 AND revoked_at IS NULL ORDER BY created_at DESC LIMIT 1`, mid).Scan(&id, &enc)
	if err != nil {
		return "", nil, err
	}
	secret, err := s.Journal.Vault.Open(enc)
	return id, secret, err
}

// TOTP (RFC 6238): 6 digits, 30-second steps, SHA-1 (what every authenticator app reads from an
// otpauth URI), one step of clock skew either side; a code is accepted once.
var totpOpts = totp.ValidateOpts{Period: 30, Skew: 1, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1}

// Enrolment is a new authenticator secret: the otpauth URI (for a QR code) and the secret.
type Enrolment struct {
	URI    string
	Secret string
	Key    *otp.Key
}

// EnrolTOTP starts (or restarts) a user's enrolment: the secret is stored sealed and counts
// once ConfirmTOTP has seen a code from it.
func (s *Service) EnrolTOTP(ctx context.Context, userID int64, login string) (*Enrolment, error) {
	key, err := totp.Generate(totp.GenerateOpts{Issuer: "shoudan", AccountName: login})
	if err != nil {
		return nil, err
	}
	_, err = s.pool().Exec(ctx, `INSERT INTO user_totp (user_id, secret_enc) VALUES ($1,$2)
		ON CONFLICT (user_id) DO UPDATE SET secret_enc=$2, confirmed_at=NULL, last_step=0, created_at=now()`,
		userID, s.Journal.Vault.Seal([]byte(key.Secret())))
	if err != nil {
		return nil, err
	}
	return &Enrolment{URI: key.URL(), Secret: key.Secret(), Key: key}, nil
}

// ConfirmTOTP completes an enrolment with a code from the authenticator.
func (s *Service) ConfirmTOTP(ctx context.Context, userID int64, code string) error {
	if err := s.checkTOTP(ctx, userID, code, false); err != nil {
		return err
	}
	_, err := s.pool().Exec(ctx, `UPDATE user_totp SET confirmed_at = now() WHERE user_id=$1`, userID)
	return err
}

// Enrolled reports whether a user has a confirmed authenticator.
func (s *Service) Enrolled(ctx context.Context, userID int64) bool {
	var ok bool
	_ = s.pool().QueryRow(ctx, `SELECT confirmed_at IS NOT NULL FROM user_totp WHERE user_id=$1`, userID).Scan(&ok)
	return ok
}

// VerifyTOTP checks a dynamic password of a confirmed enrolment.
func (s *Service) VerifyTOTP(ctx context.Context, userID int64, code string) error {
	return s.checkTOTP(ctx, userID, code, true)
}

func (s *Service) checkTOTP(ctx context.Context, userID int64, code string, confirmed bool) error {
	code = strings.TrimSpace(code)
	if userID == 0 || len(code) != 6 {
		return ErrTOTP
	}
	var enc []byte
	var ok bool
	var last int64
	err := s.pool().QueryRow(ctx, `SELECT secret_enc, confirmed_at IS NOT NULL, last_step FROM user_totp WHERE user_id=$1`, userID).Scan(&enc, &ok, &last)
	if err != nil || (confirmed && !ok) {
		return fmt.Errorf("%w (no enrolled authenticator: enrol one on the dynamic password page)", ErrTOTP)
	}
	secret, err := s.Journal.Vault.Open(enc)
	if err != nil {
		return ErrTOTP
	}
	now := time.Now()
	for _, skew := range []int64{0, -1, 1} {
		at := now.Add(time.Duration(skew*30) * time.Second)
		want, err := totp.GenerateCodeCustom(string(secret), at, totpOpts)
		if err != nil || want != code {
			continue
		}
		step := at.Unix() / 30
		// accepted once: the step must be newer than the last one used
		ct, err := s.pool().Exec(ctx, `UPDATE user_totp SET last_step=$2 WHERE user_id=$1 AND last_step < $2`, userID, step)
		if err != nil || ct.RowsAffected() == 0 {
			return fmt.Errorf("%w (this code was already used: wait for the next one)", ErrTOTP)
		}
		return nil
	}
	return ErrTOTP
}
