package backoffice_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/shoudan/shoudan/switch/backoffice"
	"github.com/shoudan/shoudan/switch/journal"
	"github.com/shoudan/shoudan/switch/switchtest"
)

func TestMain(m *testing.M) { switchtest.Main(m) }

func store(t *testing.T) *backoffice.Store {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, switchtest.Database(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := journal.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	return backoffice.NewStore(pool)
}

func TestPasswordRules(t *testing.T) {
	for pw, want := range map[string]string{
		"abc12":                 "expected 6 to 20 characters, found 5",
		"abcdefghij1234567890x": "expected 6 to 20 characters, found 21",
		"abcdefgh":              "at least one letter and one digit",
		"12345678":              "at least one letter and one digit",
		"abc 1234":              "no spaces",
		"alice1":                "must not be the login",
		"abc123":                "",
		"密码密码12":                "",
		"abcdefghij123456789x":  "",
	} {
		err := backoffice.CheckPassword("alice1", pw)
		if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("CheckPassword(%q) = %v, want %q", pw, err, want)
		}
	}
	h := backoffice.HashPassword("abc123")
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") || strings.Contains(h, "abc123") {
		t.Fatalf("hash %q: expected an argon2id PHC string", h)
	}
	if !backoffice.VerifyPassword(h, "abc123") || backoffice.VerifyPassword(h, "abc124") || backoffice.VerifyPassword("garbage", "abc123") {
		t.Fatal("VerifyPassword accepts a wrong password or rejects the right one")
	}
}

func TestUserValidation(t *testing.T) {
	s := store(t)
	ctx := context.Background()
	for _, c := range []struct {
		u    backoffice.NewUser
		want string
	}{
		{backoffice.NewUser{Login: "a", Password: "abc123", Role: backoffice.AcquirerOps}, "login: expected 3 to 32"},
		{backoffice.NewUser{Login: "bob", Password: "abc123", Role: "boss"}, "role: expected one of"},
		{backoffice.NewUser{Login: "bob", Password: "abc123", Role: backoffice.MerchantAdmin}, "needs the merchant's MID"},
		{backoffice.NewUser{Login: "bob", Password: "abc123", Role: backoffice.AcquirerOps, MID: backoffice.DemoMID}, "belongs to no merchant"},
		{backoffice.NewUser{Login: "bob", Password: "abc", Role: backoffice.AcquirerOps}, "password: expected 6 to 20"},
		{backoffice.NewUser{Login: "bob", Password: "abc123", Role: backoffice.MerchantOperator, MID: backoffice.DemoMID, TIDs: []string{"123"}}, "8-digit terminal IDs"},
	} {
		if _, err := s.AddUser(ctx, c.u); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("AddUser(%+v) = %v, want %q", c.u, err, c.want)
		}
	}
	if _, err := s.AddUser(ctx, backoffice.NewUser{Login: "bob", Password: "abc123", Role: backoffice.AcquirerOps}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddUser(ctx, backoffice.NewUser{Login: "bob", Password: "abc123", Role: backoffice.AcquirerOps}); err == nil || !strings.Contains(err.Error(), "taken") {
		t.Fatalf("a second bob: %v", err)
	}
}

func TestLockout(t *testing.T) {
	s := store(t)
	ctx := context.Background()
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.Local)
	s.Now = func() time.Time { return now }
	if _, err := s.AddUser(ctx, backoffice.NewUser{Login: "carol", Password: "right123", Role: backoffice.AcquirerOps}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(ctx, "nobody", "right123"); !errors.Is(err, backoffice.ErrBadLogin) {
		t.Fatalf("unknown login: %v", err)
	}
	for i := 1; i <= 4; i++ {
		if _, err := s.Authenticate(ctx, "carol", "wrong123"); !errors.Is(err, backoffice.ErrBadLogin) {
			t.Fatalf("failure %d: %v", i, err)
		}
	}
	// a success resets the count
	if _, err := s.Authenticate(ctx, "carol", "right123"); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 4; i++ {
		s.Authenticate(ctx, "carol", "wrong123")
	}
	if _, err := s.Authenticate(ctx, "carol", "wrong123"); !errors.Is(err, backoffice.ErrLocked) {
		t.Fatalf("5th failure: %v, want locked", err)
	}
	if _, err := s.Authenticate(ctx, "carol", "right123"); !errors.Is(err, backoffice.ErrLocked) {
		t.Fatalf("the right password while locked: %v, want locked", err)
	}
	now = now.Add(16 * time.Minute)
	if _, err := s.Authenticate(ctx, "carol", "right123"); err != nil {
		t.Fatalf("after the lock: %v", err)
	}
	u, _ := s.UserByLogin(ctx, "carol")
	if err := s.SetDisabled(ctx, u.ID, true); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(ctx, "carol", "right123"); !errors.Is(err, backoffice.ErrDisabled) {
		t.Fatalf("disabled: %v", err)
	}
}

func TestSessionExpiry(t *testing.T) {
	s := store(t)
	ctx := context.Background()
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.Local)
	s.Now = func() time.Time { return now }
	u, err := s.AddUser(ctx, backoffice.NewUser{Login: "dave", Password: "right123", Role: backoffice.MerchantAdmin, MID: backoffice.DemoMID})
	if err != nil {
		t.Fatal(err)
	}
	se, err := s.NewSession(ctx, u, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.Session(ctx, se.Token); err != nil || got.User.Login != "dave" || !got.CheckCSRF(se.CSRF) || got.CheckCSRF("x") || got.CheckCSRF("") {
		t.Fatalf("fresh session: %v %v", got, err)
	}
	// used every 20 minutes it lives until its absolute expiry (12 h), not one minute more
	for now.Add(20 * time.Minute).Before(se.Expires) {
		now = now.Add(20 * time.Minute)
		if _, err := s.Session(ctx, se.Token); err != nil {
			t.Fatalf("at %s: %v", now, err)
		}
	}
	now = se.Expires
	if _, err := s.Session(ctx, se.Token); !errors.Is(err, backoffice.ErrNoSession) {
		t.Fatalf("past its absolute expiry: %v", err)
	}
	se2, _ := s.NewSession(ctx, u, "127.0.0.1")
	now = now.Add(31 * time.Minute)
	if _, err := s.Session(ctx, se2.Token); !errors.Is(err, backoffice.ErrNoSession) {
		t.Fatalf("idle 31 minutes: %v", err)
	}
	// a password change ends the other sessions
	a, _ := s.NewSession(ctx, u, "")
	b, _ := s.NewSession(ctx, u, "")
	if err := s.ChangePassword(ctx, u.ID, "wrong", "new12345", a); err == nil {
		t.Fatal("changed with a wrong current password")
	}
	if err := s.ChangePassword(ctx, u.ID, "right123", "short", a); err == nil {
		t.Fatal("changed to a password against the rules")
	}
	if err := s.ChangePassword(ctx, u.ID, "right123", "new12345", a); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Session(ctx, a.Token); err != nil {
		t.Fatalf("the changing session: %v", err)
	}
	if _, err := s.Session(ctx, b.Token); err == nil {
		t.Fatal("another session survived the password change")
	}
	if _, err := s.Authenticate(ctx, "dave", "new12345"); err != nil {
		t.Fatal(err)
	}
}

func TestAuditAndDemoUsers(t *testing.T) {
	s := store(t)
	ctx := context.Background()
	us, err := s.DemoUsers(ctx)
	if err != nil || len(us) != 5 {
		t.Fatalf("demo users: %v %v", us, err)
	}
	again, err := s.DemoUsers(ctx)
	if err != nil || len(again) != 0 {
		t.Fatalf("demo users a second time: %v %v", again, err)
	}
	for _, u := range us {
		if _, err := s.Authenticate(ctx, u.Login, u.Password); err != nil {
			t.Fatalf("%s: %v", u.Login, err)
		}
	}
	op, _ := s.UserByLogin(ctx, "shop-op01")
	if sc := op.Scope(); sc.All || sc.MID != backoffice.DemoMID || sc.Operator != "01" || len(sc.TIDs) != 1 {
		t.Fatalf("operator scope %+v", sc)
	}
	s.Audit(ctx, nil, "mallory", backoffice.ActLoginFailed, "unknown login", "10.0.0.9", false)
	s.Audit(ctx, op, "", backoffice.ActExport, "xlsx 3 rows", "10.0.0.8", true)
	es, err := s.AuditLog(ctx, backoffice.AuditFilter{})
	if err != nil || len(es) != 2 {
		t.Fatalf("audit: %v %v", es, err)
	}
	if e := es[0]; e.Login != "shop-op01" || e.MID != backoffice.DemoMID || e.Action != "export" || e.IP != "10.0.0.8" || !e.OK || e.At.IsZero() {
		t.Fatalf("newest entry %+v", e)
	}
	if e := es[1]; e.Login != "mallory" || e.UserID != 0 || e.OK {
		t.Fatalf("failed login entry %+v", e)
	}
}
