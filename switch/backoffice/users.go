// Package backoffice is who is asking: the back office's users and roles, password rules and
// hashing (argon2id), login with lockout, sessions with expiry and CSRF tokens, and the audit log.
// The console's HTTP handlers, `shoudan users` and later back-office features (refund review,
// what-if) all go through it; it holds no HTTP code.
package backoffice

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/crypto/argon2"
)

// Role is what a user may do.
type Role string

const (
	AcquirerAdmin    Role = "acquirer_admin"    // everything, all merchants; reads the audit log; manages users
	AcquirerOps      Role = "acquirer_ops"      // all merchants' transactions, terminals and merchants
	MerchantAdmin    Role = "merchant_admin"    // everything of their merchant; manages its operators
	MerchantOperator Role = "merchant_operator" // only the transactions of their terminals / operator code
	RefundReviewer   Role = "refund_reviewer"   // their merchant's transactions; decides refunds
)

// Roles lists every role, acquirer first.
var Roles = []Role{AcquirerAdmin, AcquirerOps, MerchantAdmin, MerchantOperator, RefundReviewer}

// Valid reports whether r is a known role.
func (r Role) Valid() bool { return slices.Contains(Roles, r) }

// Acquirer reports whether r is one of the acquirer's (all merchants) roles.
func (r Role) Acquirer() bool { return r == AcquirerAdmin || r == AcquirerOps }

// User is a back-office user.
type User struct {
	ID          int64
	Login, Name string
	Role        Role
	MID         string   // "" for acquirer roles
	TIDs        []string // merchant operator: assigned terminals (none: all of the merchant's)
	Operator    string   // merchant operator: F63.1 operator code ("": any)
	Disabled    bool
	Failed      int
	LockedUntil time.Time
	CreatedAt   time.Time
	CreatedBy   string
}

// Scope is the part of the journal a user may read. Every query of the console is narrowed by it.
type Scope struct {
	All      bool     // every merchant
	MID      string   // otherwise: this merchant only
	TIDs     []string // and, when set, only these terminals
	Operator string   // and, when set, only this operator code
}

// Scope returns what u may read.
func (u *User) Scope() Scope {
	if u.Role.Acquirer() {
		return Scope{All: true}
	}
	s := Scope{MID: u.MID}
	if u.Role == MerchantOperator {
		s.TIDs, s.Operator = u.TIDs, u.Operator
	}
	return s
}

// Can reports whether u may do action.
func (u *User) Can(action string) bool {
	switch action {
	case "audit", "users.all":
		return u.Role == AcquirerAdmin
	case "merchants.edit", "terminals.edit":
		return u.Role == AcquirerAdmin || u.Role == AcquirerOps
	case "users":
		return u.Role == AcquirerAdmin || u.Role == MerchantAdmin
	case "terminals":
		return u.Role != MerchantOperator && u.Role != RefundReviewer
	case "merchants":
		return u.Role.Acquirer()
	case "refunds.review":
		return u.Role == RefundReviewer || u.Role == MerchantAdmin || u.Role == AcquirerAdmin
	}
	return false
}

// Password rules.
const (
	MinPassword = 6
	MaxPassword = 20
)

// CheckPassword applies the password rules: 6 to 20 characters, at least one letter and one
// digit, no spaces or control characters, not the login itself.
func CheckPassword(login, pw string) error {
	n := utf8.RuneCountInString(pw)
	if n < MinPassword || n > MaxPassword {
		return fmt.Errorf("password: expected %d to %d characters, found %d", MinPassword, MaxPassword, n)
	}
	var letter, digit bool
	for _, r := range pw {
		switch {
		case unicode.IsSpace(r) || unicode.IsControl(r):
			return errors.New("password: expected no spaces or control characters")
		case unicode.IsDigit(r):
			digit = true
		case unicode.IsLetter(r):
			letter = true
		}
	}
	if !letter || !digit {
		return errors.New("password: expected at least one letter and one digit")
	}
	if strings.EqualFold(pw, login) {
		return errors.New("password: must not be the login name")
	}
	return nil
}

// argon2id parameters (OWASP's 2023 minimum: 19 MiB, 2 passes, 1 lane).
const (
	argonTime    = 2
	argonMemory  = 19 * 1024
	argonThreads = 1
	argonKeyLen  = 32
)

// HashPassword returns the argon2id hash of pw in PHC string form.
func HashPassword(pw string) string {
	salt := make([]byte, 16)
	_, _ = rand.Read(salt)
	key := argon2.IDKey([]byte(pw), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads, b64.EncodeToString(salt), b64.EncodeToString(key))
}

// VerifyPassword checks pw against a PHC argon2id hash.
func VerifyPassword(hash, pw string) bool {
	var v, m, t int
	var p uint8
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false
	}
	if _, err := fmt.Sscanf(parts[2], "v=%d", &v); err != nil || v != argon2.Version {
		return false
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil {
		return false
	}
	b64 := base64.RawStdEncoding
	salt, err1 := b64.DecodeString(parts[4])
	want, err2 := b64.DecodeString(parts[5])
	if err1 != nil || err2 != nil || m <= 0 || m > 1<<20 || t <= 0 || t > 16 || p == 0 {
		return false
	}
	got := argon2.IDKey([]byte(pw), salt, uint32(t), uint32(m), p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1
}

// dummyHash is verified when the login does not exist, so that an unknown login takes as long
// as a wrong password.
var dummyHash = HashPassword("not-a-password-0")

// Store is the users, sessions and audit log in the journal database.
type Store struct {
	Pool *pgxpool.Pool
	// MaxFailures consecutive failed logins lock a user for LockFor (defaults 5 and 15 min).
	MaxFailures int
	LockFor     time.Duration
	// SessionIdle ends a session unused for this long; SessionMax ends any session (30 min, 12 h).
	SessionIdle, SessionMax time.Duration
	Now                     func() time.Time
}

// NewStore returns a store with the default policy.
func NewStore(pool *pgxpool.Pool) *Store {
	return &Store{Pool: pool, MaxFailures: 5, LockFor: 15 * time.Minute, SessionIdle: 30 * time.Minute, SessionMax: 12 * time.Hour, Now: time.Now}
}

// NewUser is what creating a user takes.
type NewUser struct {
	Login, Name, Password string
	Role                  Role
	MID                   string
	TIDs                  []string
	Operator              string
	CreatedBy             string
}

// Errors a caller shows as they are.
var (
	ErrBadLogin = errors.New("wrong login name or password")
	ErrLocked   = errors.New("too many failed logins: the account is locked for a while; ask an administrator")
	ErrDisabled = errors.New("the account is disabled")
	ErrNoUser   = errors.New("no such user")
)

func validLogin(s string) error {
	if len(s) < 3 || len(s) > 32 {
		return fmt.Errorf("login: expected 3 to 32 characters, found %d", len(s))
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-' || r == '@') {
			return fmt.Errorf("login: expected letters, digits and . _ - @, found %q", r)
		}
	}
	return nil
}

// AddUser validates and creates a user.
func (s *Store) AddUser(ctx context.Context, n NewUser) (*User, error) {
	if err := validLogin(n.Login); err != nil {
		return nil, err
	}
	if !n.Role.Valid() {
		return nil, fmt.Errorf("role: expected one of %v, found %q", Roles, n.Role)
	}
	if n.Role.Acquirer() != (n.MID == "") {
		if n.Role.Acquirer() {
			return nil, fmt.Errorf("mid: an acquirer user (%s) belongs to no merchant, found %q", n.Role, n.MID)
		}
		return nil, fmt.Errorf("mid: a merchant user (%s) needs the merchant's MID", n.Role)
	}
	if n.MID != "" && !digits(n.MID, 15) {
		return nil, fmt.Errorf("mid: expected 15 digits, found %q", n.MID)
	}
	for _, t := range n.TIDs {
		if !digits(t, 8) {
			return nil, fmt.Errorf("tids: expected 8-digit terminal IDs, found %q", t)
		}
	}
	if n.Role != MerchantOperator && (len(n.TIDs) > 0 || n.Operator != "") {
		return nil, errors.New("tids and operator code are for merchant operators only")
	}
	if len(n.Operator) > 3 {
		return nil, fmt.Errorf("operator: expected an operator code of up to 3 characters (F63.1), found %q", n.Operator)
	}
	if err := CheckPassword(n.Login, n.Password); err != nil {
		return nil, err
	}
	if n.TIDs == nil {
		n.TIDs = []string{}
	}
	var id int64
	err := s.Pool.QueryRow(ctx, `INSERT INTO console_user (login, name, role, mid, tids, operator, pw_hash, created_by)
		VALUES ($1,$2,$3,$4,$5,$6,$7,$8) RETURNING id`, n.Login, n.Name, string(n.Role), n.MID, n.TIDs, n.Operator, HashPassword(n.Password), n.CreatedBy).Scan(&id)
	if err != nil {
		if strings.Contains(err.Error(), "console_user_login_key") {
			return nil, fmt.Errorf("login: %q is taken", n.Login)
		}
		return nil, err
	}
	return s.UserByID(ctx, id)
}

func digits(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

const userColumns = `id, login, name, role, mid, tids, operator, disabled, failed, coalesce(locked_until, 'epoch'), created_at, created_by`

func scanUser(row pgx.Row) (*User, error) {
	var u User
	var role string
	if err := row.Scan(&u.ID, &u.Login, &u.Name, &role, &u.MID, &u.TIDs, &u.Operator, &u.Disabled, &u.Failed, &u.LockedUntil, &u.CreatedAt, &u.CreatedBy); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, ErrNoUser
		}
		return nil, err
	}
	u.Role = Role(role)
	return &u, nil
}

// UserByID finds a user.
func (s *Store) UserByID(ctx context.Context, id int64) (*User, error) {
	return scanUser(s.Pool.QueryRow(ctx, "SELECT "+userColumns+" FROM console_user WHERE id=$1", id))
}

// UserByLogin finds a user.
func (s *Store) UserByLogin(ctx context.Context, login string) (*User, error) {
	return scanUser(s.Pool.QueryRow(ctx, "SELECT "+userColumns+" FROM console_user WHERE login=$1", login))
}

// Users lists users: all of them (mid ""), or one merchant's.
func (s *Store) Users(ctx context.Context, mid string) ([]*User, error) {
	rows, err := s.Pool.Query(ctx, "SELECT "+userColumns+" FROM console_user WHERE $1 = '' OR mid = $1 ORDER BY mid, role, login", mid)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

// Count is the number of users.
func (s *Store) Count(ctx context.Context) (int, error) {
	var n int
	err := s.Pool.QueryRow(ctx, "SELECT count(*) FROM console_user").Scan(&n)
	return n, err
}

// SetDisabled disables or enables a user; disabling ends the user's sessions. Enabling clears a lockout.
func (s *Store) SetDisabled(ctx context.Context, id int64, disabled bool) error {
	tag, err := s.Pool.Exec(ctx, "UPDATE console_user SET disabled=$2, failed=0, locked_until=NULL WHERE id=$1", id, disabled)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return ErrNoUser
	}
	if disabled {
		_, err = s.Pool.Exec(ctx, "DELETE FROM console_session WHERE user_id=$1", id)
	}
	return err
}

// Authenticate checks a login. Each failure counts; MaxFailures in a row lock the user for
// LockFor (a correct password does not open a locked account). A success resets the count.
func (s *Store) Authenticate(ctx context.Context, login, pw string) (*User, error) {
	var hash string
	u, err := scanUserHash(s.Pool.QueryRow(ctx, "SELECT "+userColumns+", pw_hash FROM console_user WHERE login=$1", login), &hash)
	if errors.Is(err, ErrNoUser) {
		VerifyPassword(dummyHash, pw)
		return nil, ErrBadLogin
	}
	if err != nil {
		return nil, err
	}
	now := s.Now()
	if u.LockedUntil.After(now) {
		return u, ErrLocked
	}
	ok := VerifyPassword(hash, pw)
	if u.Disabled {
		return u, ErrDisabled
	}
	if !ok {
		var locked bool
		err := s.Pool.QueryRow(ctx, `UPDATE console_user SET failed = failed + 1,
			locked_until = CASE WHEN failed + 1 >= $2 THEN $3::timestamptz END WHERE id=$1 RETURNING locked_until IS NOT NULL`,
			u.ID, s.MaxFailures, now.Add(s.LockFor)).Scan(&locked)
		if err != nil {
			return nil, err
		}
		if locked {
			return u, ErrLocked
		}
		return u, ErrBadLogin
	}
	if _, err := s.Pool.Exec(ctx, "UPDATE console_user SET failed=0, locked_until=NULL WHERE id=$1", u.ID); err != nil {
		return nil, err
	}
	u.Failed = 0
	return u, nil
}

func scanUserHash(row pgx.Row, hash *string) (*User, error) {
	var u User
	var role string
	if err := row.Scan(&u.ID, &u.Login, &u.Name, &role, &u.MID, &u.TIDs, &u.Operator, &u.Disabled, &u.Failed, &u.LockedUntil, &u.CreatedAt, &u.CreatedBy, hash); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, ErrNoUser
		}
		return nil, err
	}
	u.Role = Role(role)
	return &u, nil
}

// ChangePassword sets a new password after checking the old one, and ends the user's other
// sessions (keep is the session to keep, may be nil).
func (s *Store) ChangePassword(ctx context.Context, id int64, old, pw string, keep *Session) error {
	var hash, login string
	if err := s.Pool.QueryRow(ctx, "SELECT pw_hash, login FROM console_user WHERE id=$1", id).Scan(&hash, &login); err != nil {
		return ErrNoUser
	}
	if !VerifyPassword(hash, old) {
		return errors.New("the current password is wrong")
	}
	if old == pw {
		return errors.New("password: the new password must differ from the current one")
	}
	return s.SetPassword(ctx, id, login, pw, keep)
}

// SetPassword sets a password (an administrator's reset, or ChangePassword) and ends the user's
// sessions other than keep.
func (s *Store) SetPassword(ctx context.Context, id int64, login, pw string, keep *Session) error {
	if err := CheckPassword(login, pw); err != nil {
		return err
	}
	if _, err := s.Pool.Exec(ctx, "UPDATE console_user SET pw_hash=$2, pw_changed_at=now(), failed=0, locked_until=NULL WHERE id=$1", id, HashPassword(pw)); err != nil {
		return err
	}
	var keepHash []byte
	if keep != nil {
		keepHash = keep.hash
	}
	_, err := s.Pool.Exec(ctx, "DELETE FROM console_session WHERE user_id=$1 AND token_hash IS DISTINCT FROM $2", id, keepHash)
	return err
}

// Session is a logged-in browser.
type Session struct {
	Token   string // the cookie value (only known at creation and from the cookie)
	CSRF    string // the token every form of this session carries
	User    *User
	Expires time.Time
	hash    []byte
}

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func tokenHash(tok string) []byte { h := sha256.Sum256([]byte(tok)); return h[:] }

// NewSession starts a session for u.
func (s *Store) NewSession(ctx context.Context, u *User, ip string) (*Session, error) {
	se := &Session{Token: randomToken(), CSRF: randomToken(), User: u, Expires: s.Now().Add(s.SessionMax)}
	se.hash = tokenHash(se.Token)
	_, err := s.Pool.Exec(ctx, "INSERT INTO console_session (token_hash, user_id, csrf, expires_at, ip, created_at, seen_at) VALUES ($1,$2,$3,$4,$5,$6,$6)",
		se.hash, u.ID, se.CSRF, se.Expires, ip, s.Now())
	if err != nil {
		return nil, err
	}
	return se, nil
}

// ErrNoSession means the cookie names no live session: log in again.
var ErrNoSession = errors.New("not logged in, or the session has expired")

// Session looks up the session of a cookie token and marks it used. An expired session (past its
// absolute expiry, or idle too long) or one of a disabled user is deleted.
func (s *Store) Session(ctx context.Context, tok string) (*Session, error) {
	if tok == "" {
		return nil, ErrNoSession
	}
	h := tokenHash(tok)
	now := s.Now()
	var se Session
	var uid int64
	var seen time.Time
	err := s.Pool.QueryRow(ctx, "SELECT user_id, csrf, expires_at, seen_at FROM console_session WHERE token_hash=$1", h).Scan(&uid, &se.CSRF, &se.Expires, &seen)
	if err != nil {
		return nil, ErrNoSession
	}
	u, err := s.UserByID(ctx, uid)
	if err != nil || u.Disabled || !now.Before(se.Expires) || now.Sub(seen) > s.SessionIdle {
		_, _ = s.Pool.Exec(ctx, "DELETE FROM console_session WHERE token_hash=$1", h)
		return nil, ErrNoSession
	}
	if now.Sub(seen) > 10*time.Second { // one write per 10 s of activity, not per request
		_, _ = s.Pool.Exec(ctx, "UPDATE console_session SET seen_at=$2 WHERE token_hash=$1", h, now)
	}
	se.Token, se.User, se.hash = tok, u, h
	return &se, nil
}

// CheckCSRF reports whether a form's token is the session's.
func (se *Session) CheckCSRF(tok string) bool {
	return tok != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(se.CSRF)) == 1
}

// EndSession logs a session out.
func (s *Store) EndSession(ctx context.Context, se *Session) error {
	_, err := s.Pool.Exec(ctx, "DELETE FROM console_session WHERE token_hash=$1", se.hash)
	return err
}

// PurgeSessions deletes expired sessions.
func (s *Store) PurgeSessions(ctx context.Context) error {
	now := s.Now()
	_, err := s.Pool.Exec(ctx, "DELETE FROM console_session WHERE expires_at <= $1 OR seen_at < $2", now, now.Add(-s.SessionIdle))
	return err
}

// Allows reports whether a transaction of merchant mid, terminal tid, taken under operator code
// op, lies in the scope.
func (s Scope) Allows(mid, tid, op string) bool {
	if s.All {
		return true
	}
	if mid != s.MID {
		return false
	}
	if len(s.TIDs) > 0 && !slices.Contains(s.TIDs, tid) {
		return false
	}
	return s.Operator == "" || s.Operator == op
}
