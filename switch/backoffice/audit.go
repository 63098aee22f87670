package backoffice

import (
	"context"
	"crypto/rand"
	"fmt"
	"github.com/jackc/pgx/v5/pgconn"
	"time"
)

// Audit actions.
const (
	ActLogin          = "login"
	ActLoginFailed    = "login_failed"
	ActLogout         = "logout"
	ActExport         = "export"
	ActConfigChange   = "config_change"
	ActPasswordChange = "password_change"
	ActUserAdd        = "user_add"
	ActUserDisable    = "user_disable"
	ActUserEnable     = "user_enable"
	ActRefundDecision = "refund_decision"
	ActWhatIf         = "whatif_preview" // a draft change replayed over the journal (what-if)
	ActDenied         = "denied"         // a request outside the user's role or scope
)

// Entry is one line of the audit log: who did what, when and from where.
type Entry struct {
	ID     int64
	At     time.Time
	Login  string
	UserID int64
	MID    string
	Action string
	Detail string
	IP     string
	OK     bool
}

// Audit writes an entry. u may be nil (a failed login of an unknown name: login is what was typed).
func (s *Store) Audit(ctx context.Context, u *User, login, action, detail, ip string, ok bool) error {
	var uid any
	mid := ""
	if u != nil {
		uid, login, mid = u.ID, u.Login, u.MID
	}
	_, err := s.Pool.Exec(ctx, "INSERT INTO audit_log (at, login, user_id, mid, action, detail, ip, ok) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)",
		s.Now(), login, uid, mid, action, detail, ip, ok)
	return err
}

// AuditFilter selects audit entries.
type AuditFilter struct {
	Login, Action string
	Limit         int
	BeforeID      int64
}

// AuditLog lists entries, newest first.
func (s *Store) AuditLog(ctx context.Context, f AuditFilter) ([]Entry, error) {
	if f.Limit <= 0 || f.Limit > 1000 {
		f.Limit = 200
	}
	rows, err := s.Pool.Query(ctx, `SELECT id, at, login, coalesce(user_id, 0), mid, action, detail, ip, ok FROM audit_log
		WHERE ($1 = '' OR login = $1) AND ($2 = '' OR action = $2) AND ($3 = 0 OR id < $3) ORDER BY id DESC LIMIT $4`,
		f.Login, f.Action, f.BeforeID, f.Limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Entry
	for rows.Next() {
		var e Entry
		if err := rows.Scan(&e.ID, &e.At, &e.Login, &e.UserID, &e.MID, &e.Action, &e.Detail, &e.IP, &e.OK); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// DemoMID is the demo merchant the demo's merchant users belong to.
const DemoMID = "898310058120001"

// DemoUsers creates the demo's users when there are none yet, each with a fresh random password,
// and returns them with their passwords (to be printed once). With users present it does nothing.
func (s *Store) DemoUsers(ctx context.Context) ([]NewUser, error) {
	if n, err := s.Count(ctx); err != nil || n > 0 {
		return nil, err
	}
	us := []NewUser{
		{Login: "admin", Name: "收单管理员 Acquirer admin", Role: AcquirerAdmin},
		{Login: "ops", Name: "收单运营 Acquirer operations", Role: AcquirerOps},
		{Login: "shop-admin", Name: "演示餐厅管理员 Demo Restaurant admin", Role: MerchantAdmin, MID: DemoMID},
		{Login: "shop-op01", Name: "收银员01 Cashier 01", Role: MerchantOperator, MID: DemoMID, TIDs: []string{"10000001"}, Operator: "01"},
		{Login: "shop-refund", Name: "退款审核员 Refund reviewer", Role: RefundReviewer, MID: DemoMID},
	}
	for i := range us {
		us[i].Password = RandomPassword()
		us[i].CreatedBy = "demo"
		if _, err := s.AddUser(ctx, us[i]); err != nil {
			return nil, fmt.Errorf("demo user %s: %w", us[i].Login, err)
		}
	}
	return us, nil
}

// RandomPassword returns a 12-character password that meets the rules.
func RandomPassword() string {
	const letters = "abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ"
	const digits = "23456789"
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	out := make([]byte, 12)
	for i := range b {
		if i%4 == 3 {
			out[i] = digits[int(b[i])%len(digits)]
		} else {
			out[i] = letters[int(b[i])%len(letters)]
		}
	}
	return string(out)
}

type actorKey struct{}

type actor struct {
	user *User
	ip   string
}

// WithActor marks ctx as a request of u from ip, for audit entries written deeper down (the
// registry's audit hook runs inside the change's transaction).
func WithActor(ctx context.Context, u *User, ip string) context.Context {
	return context.WithValue(ctx, actorKey{}, actor{u, ip})
}

// Execer is a transaction (or pool) an audit entry is written through.
type Execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// AuditIn writes an entry through tx, so that it commits or rolls back with the change it
// records. The actor comes from ctx (WithActor); without one, who is recorded as given (the
// command line, a config file import).
func AuditIn(ctx context.Context, tx Execer, who, action, detail string) error {
	var uid any
	mid, ip := "", ""
	if a, ok := ctx.Value(actorKey{}).(actor); ok && a.user != nil {
		uid, who, mid, ip = a.user.ID, a.user.Login, a.user.MID, a.ip
	}
	_, err := tx.Exec(ctx, "INSERT INTO audit_log (login, user_id, mid, action, detail, ip, ok) VALUES ($1,$2,$3,$4,$5,$6,true)",
		who, uid, mid, action, detail, ip)
	return err
}
