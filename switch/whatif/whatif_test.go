package whatif_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	rc "github.com/shoudan/shoudan/responsecodes"
	"github.com/shoudan/shoudan/switch/app"
	"github.com/shoudan/shoudan/switch/switchtest"
	"github.com/shoudan/shoudan/switch/whatif"
	"github.com/shoudan/shoudan/terminals"
	"github.com/shoudan/shoudan/terminals/device"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) { switchtest.Main(m) }

const goodPAN = "6222021234567890123"

var (
	chip = device.Chip(goodPAN, "2912", "123456")
	tap  = device.Tap(goodPAN, "2912", "")
)

// sent is one transaction the test made, with what the test knows about it.
type sent struct {
	rrn, tid, mid, kind string
	tap                 bool // 双免: contactless, no PIN
	amount              int64
	code                string // what the terminal was answered
}

// traffic journals a known mix through a real switch over TCP: 双免 taps under and over the
// limit, chip purchases, 双免 at a terminal and a merchant not enabled or not yet whitelisted, a
// cash-MCC merchant, a merchant without an English name, a void and a refund of an earlier day.
func traffic(t *testing.T, s *switchtest.Switch) []sent {
	var out []sent
	do := func(tid string, kind string, isTap bool, amount int64, f func(d *device.Terminal) (*device.Result, error), d *device.Terminal) *device.Result {
		r, err := f(d)
		require.NoError(t, err)
		term := s.Registry.Get().Terminal(tid, d.MID)
		require.NotNil(t, term)
		// a decline by the acquirer checks carries no F37: the journal gave it one
		var rrn string
		require.NoError(t, s.Journal.Pool.QueryRow(context.Background(),
			"SELECT rrn FROM txn WHERE mid = $1 AND tid = $2 AND stan = $3 ORDER BY id DESC LIMIT 1", term.MID, tid, r.Resp.STAN).Scan(&rrn))
		out = append(out, sent{rrn: rrn, tid: tid, mid: term.MID, kind: kind, tap: isTap, amount: amount, code: r.Code()})
		return r
	}
	purchase := func(d *device.Terminal, tid string, c device.Card, amount int64) *device.Result {
		return do(tid, "purchase", c.EntryMode == "072" && c.PIN == "", amount, func(d *device.Terminal) (*device.Result, error) { return d.Purchase(c, amount) }, d)
	}
	// an original three days ago, refunded today
	s.Switch.Now = func() time.Time { return time.Now().AddDate(0, 0, -3) }
	d1 := s.SignedOn("10000001")
	old := purchase(d1, "10000001", chip, 8800)
	require.Equal(t, rc.Approved, old.Code())
	s.Switch.Now = time.Now
	d1 = s.SignedOn("10000001")

	for _, a := range []int64{30000, 60000, 90000, 100000, 120000} {
		purchase(d1, "10000001", tap, a)
	}
	p := purchase(d1, "10000001", chip, 5000)
	purchase(d1, "10000001", chip, 70000)
	do("10000001", "void", false, 5000, func(d *device.Terminal) (*device.Result, error) { return d.Void(chip, p) }, d1)
	do("10000001", "refund", false, 1000, func(d *device.Terminal) (*device.Result, error) {
		return d.Refund(chip, old.Resp.RRN, time.Now().AddDate(0, 0, -3).Format("0102"), 1000)
	}, d1)
	d7 := s.SignedOn("10000007") // merchant 001, terminal not enabled for 双免
	purchase(d7, "10000007", tap, 20000)
	purchase(d7, "10000007", chip, 21000)
	d9 := s.SignedOn("10000009") // merchant 008: 双免 registered 2099-01-01, not yet effective
	purchase(d9, "10000009", tap, 20000)
	purchase(d9, "10000009", chip, 21000)
	d3 := s.SignedOn("10000003") // cash MCC 6011
	purchase(d3, "10000003", chip, 10000)
	d2 := s.SignedOn("10000002") // no English name
	purchase(d2, "10000002", chip, 10000)
	d6 := s.SignedOn("10000006") // merchant 006 may not refund
	do("10000006", "refund", false, 500, func(d *device.Terminal) (*device.Result, error) {
		return d.Refund(chip, old.Resp.RRN, time.Now().AddDate(0, 0, -3).Format("0102"), 500)
	}, d6)

	// the switch decided them as the demo config says (the test's own premise)
	codes := map[string]string{}
	for _, x := range out {
		codes[x.tid+" "+x.kind+" "+terminals.FormatAmount(x.amount)] = x.code
	}
	assert.Equal(t, rc.IncorrectPIN, codes["10000001 purchase 1200.00"])
	assert.Equal(t, rc.Approved, codes["10000001 purchase 1000.00"])
	assert.Equal(t, rc.Approved, codes["10000001 refund 10.00"])
	assert.Equal(t, rc.Approved, codes["10000001 void 50.00"])
	assert.Equal(t, rc.ReconcileError, codes["10000007 purchase 200.00"])
	assert.Equal(t, rc.InvalidMerchant, codes["10000009 purchase 200.00"])
	assert.Equal(t, rc.ReconcileError, codes["10000003 purchase 100.00"])
	assert.Equal(t, rc.NotPermittedToTerm, codes["10000006 refund 5.00"])
	return out
}

// draft writes the switch's config with edit applied and loads it as what-if would.
func draft(t testing.TB, s *switchtest.Switch, old, new string) *terminals.Registry {
	t.Helper()
	b, err := os.ReadFile(s.Config.Path)
	require.NoError(t, err)
	require.Contains(t, string(b), old)
	p := t.TempDir() + "/draft.yaml"
	require.NoError(t, os.WriteFile(p, []byte(strings.Replace(string(b), old, new, 1)), 0o644))
	_, reg, err := app.Load(p)
	require.NoError(t, err)
	return reg
}

func changed(r *whatif.Report) map[string]string {
	out := map[string]string{}
	for _, c := range r.Changes {
		out[c.RRN] = c.Was.String() + " → " + c.Would.String()
	}
	return out
}

func TestWhatIf(t *testing.T) {
	s := switchtest.Start(t, switchtest.Options{})
	txns := traffic(t, s)
	ctx := context.Background()
	today := time.Now()
	y, m, d := today.Date()
	o := whatif.Options{From: time.Date(y, m, d, 0, 0, 0, 0, time.UTC).AddDate(0, 0, -7), To: time.Date(y, m, d, 0, 0, 0, 0, time.UTC)}
	live := s.Registry.Get()
	run := func(reg *terminals.Registry) *whatif.Report {
		r, err := whatif.Run(ctx, s.Journal, live, reg, o)
		require.NoError(t, err)
		require.Equal(t, len(txns), r.Examined, "every journaled financial transaction is replayed")
		return r
	}
	// expect computes the changes independently of the switch: for each transaction the test
	// sent, what the draft's rule makes of it.
	expect := func(f func(x sent) (string, bool)) map[string]string {
		out := map[string]string{}
		for _, x := range txns {
			if to, ok := f(x); ok {
				out[x.rrn] = to
			}
		}
		return out
	}
	approved := func(x sent) bool { return x.code == rc.Approved }

	t.Run("unchanged config changes nothing", func(t *testing.T) {
		r := run(live)
		assert.Zero(t, r.Changed)
		assert.Empty(t, r.Undetermined)
		assert.Empty(t, r.ConfigChanges)
	})

	t.Run("lower the 双免 limit", func(t *testing.T) {
		r := run(draft(t, s, `qps_limit: "1000.00"`, `qps_limit: "500.00"`))
		want := expect(func(x sent) (string, bool) {
			if x.tap && x.tid == "10000001" && approved(x) && x.amount > 50000 {
				return "to the issuer → 55 qps-limit", true
			}
			return "", false
		})
		assert.Len(t, want, 3, "600.00, 900.00 and 1000.00")
		assert.Equal(t, want, changed(r))
		assert.Equal(t, []string{"rules: qps_limit 1000.00 → 500.00"}, r.ConfigChanges)
		require.Len(t, r.Groups, 1)
		assert.Equal(t, int64(60000+90000+100000), r.Groups[0].Amount)
		assert.Contains(t, r.Groups[0].Summary(), "1 merchant accounts for 100%")
	})

	t.Run("add a cash MCC", func(t *testing.T) {
		r := run(draft(t, s, `cash_mccs: ["6010", "6011", "6050", "6051"]`, `cash_mccs: ["6010", "6011", "6050", "6051", "5812"]`))
		want := expect(func(x sent) (string, bool) {
			// every purchase at an MCC 5812 merchant (MID digits 8-11: 001 and 008) that got past
			// rule 8: now 95 at rule 9
			if x.mid[7:11] != "5812" || x.kind != "purchase" {
				return "", false
			}
			switch {
			case approved(x):
				return "to the issuer → 95 cash-mcc", true
			case x.code == rc.IncorrectPIN:
				return "55 qps-limit → 95 cash-mcc", true
			case x.code == rc.ReconcileError:
				return "95 qps-enabled → 95 cash-mcc", true
			case x.code == rc.InvalidMerchant:
				return "03 qps-whitelist → 95 cash-mcc", true
			}
			return "", false
		})
		// 001: the original of the refund, 5 taps, 2 chip purchases at 10000001, 2 at 10000007; 008: 2
		assert.Len(t, want, 12)
		assert.Equal(t, want, changed(r))
	})

	t.Run("raise the minimum SDK version", func(t *testing.T) {
		r := run(draft(t, s, `min_sdk_version: "3.0.0"`, `min_sdk_version: "9.0"`))
		want := expect(func(x sent) (string, bool) {
			// every financial request but reversals reaches rule 5 (all passed rules 2-4); the
			// devices send SDK 3.2.1
			switch {
			case approved(x):
				return "to the issuer → 93 device", true
			case x.code == rc.IncorrectPIN:
				return "55 qps-limit → 93 device", true
			case x.code == rc.InvalidMerchant:
				return "03 qps-whitelist → 93 device", true
			case x.tid == "10000003":
				return "95 cash-mcc → 93 device", true
			case x.tid == "10000002":
				return "95 merchant-english-name → 93 device", true
			case x.tid == "10000007":
				return "95 qps-enabled → 93 device", true
			case x.tid == "10000006":
				return "58 refund-allowed → 93 device", true
			}
			t.Fatalf("unexpected %+v", x)
			return "", false
		})
		assert.Len(t, want, len(txns))
		assert.Equal(t, want, changed(r))
		for _, c := range r.Changes {
			assert.Contains(t, c.Reason, "SDK version 3.2.1 is older than the required 9.0.0")
		}
	})

	t.Run("disable a merchant's 双免", func(t *testing.T) {
		r := run(draft(t, s, `{mid: "898310058120001", name: 演示餐厅, name_en: Demo Restaurant, qps: true}`,
			`{mid: "898310058120001", name: 演示餐厅, name_en: Demo Restaurant, qps: false}`))
		want := expect(func(x sent) (string, bool) {
			if x.tap && x.tid == "10000001" {
				if approved(x) {
					return "to the issuer → 95 qps-enabled", true
				}
				return "55 qps-limit → 95 qps-enabled", true
			}
			return "", false // 10000007's tap was 95 qps-enabled already (terminal not enabled): same rule
		})
		assert.Len(t, want, 5)
		assert.Equal(t, want, changed(r))
		assert.Equal(t, []string{"merchant 898310058120001: qps true → false"}, r.ConfigChanges)
	})

	t.Run("move whitelist dates", func(t *testing.T) {
		tomorrow := time.Now().AddDate(0, 0, 1).Format("2006-01-02")
		reg := draft(t, s, `"898310058120001": 2025-01-01`, `"898310058120001": `+tomorrow)
		r, err := whatif.Run(ctx, s.Journal, live, reg, o)
		require.NoError(t, err)
		want := expect(func(x sent) (string, bool) {
			if x.tap && x.tid == "10000001" {
				if approved(x) {
					return "to the issuer → 03 qps-whitelist", true
				}
				return "55 qps-limit → 03 qps-whitelist", true
			}
			return "", false
		})
		assert.Equal(t, want, changed(r))

		// the pending merchant registered long ago: its tap now passes every acquirer check
		reg = draft(t, s, `"898310058120008": 2099-01-01`, `"898310058120008": 2025-06-01`)
		r, err = whatif.Run(ctx, s.Journal, live, reg, o)
		require.NoError(t, err)
		want = expect(func(x sent) (string, bool) {
			if x.tap && x.tid == "10000009" {
				return "03 qps-whitelist → to the issuer", true
			}
			return "", false
		})
		assert.Len(t, want, 1)
		assert.Equal(t, want, changed(r))
	})

	t.Run("refund window and permission", func(t *testing.T) {
		refund := expect(func(x sent) (string, bool) { return "", x.kind == "refund" && x.tid == "10000001" })
		require.Len(t, refund, 1)
		var rrn string
		for k := range refund {
			rrn = k
		}
		r := run(draft(t, s, `refund_window_days: 365`, `refund_window_days: 2`))
		assert.Equal(t, map[string]string{rrn: "to the issuer → 12 refund-window"}, changed(r), "the original is 3 days old")
		r = run(draft(t, s, `refund_window_days: 365`, `refund_window_days: 3`))
		assert.Zero(t, r.Changed, "3 days is within a 3-day window")
		r = run(draft(t, s, `{mid: "898310058120001", name: 演示餐厅, name_en: Demo Restaurant, qps: true}`,
			`{mid: "898310058120001", name: 演示餐厅, name_en: Demo Restaurant, qps: true, refund: false}`))
		assert.Equal(t, map[string]string{rrn: "to the issuer → 58 refund-allowed"}, changed(r))

		// merchant 006 allowed to refund: its refund would go on to look for its original, which
		// it never did (it got 58 first), and what it would have found depends on the journal of
		// that moment: undetermined, not guessed
		r = run(draft(t, s, `{mid: "898310059440006", name: 珠宝店, name_en: Jewellery, refund: false}`,
			`{mid: "898310059440006", name: 珠宝店, name_en: Jewellery, refund: true}`))
		assert.Zero(t, r.Changed)
		assert.Equal(t, map[string]int{"refund-original": 1}, r.Undetermined)
		assert.Equal(t, 1, r.UndeterminedTotal())
	})

	t.Run("one merchant only", func(t *testing.T) {
		o := o
		o.MID = "898310058120008"
		r, err := whatif.Run(ctx, s.Journal, live, draft(t, s, `min_sdk_version: "3.0.0"`, `min_sdk_version: "9.0"`), o)
		require.NoError(t, err)
		assert.Equal(t, 2, r.Examined)
		assert.Equal(t, 2, r.Changed)
	})
}

// TestWhatIfChangesNothing: a what-if run writes nothing to the journal and sends nothing to the
// issuer, and a draft that is not valid is refused with its line.
func TestWhatIfChangesNothing(t *testing.T) {
	s := switchtest.Start(t, switchtest.Options{})
	traffic(t, s)
	ctx := context.Background()
	snapshot := func() string {
		var sum string
		err := s.Journal.Pool.QueryRow(ctx, `SELECT concat_ws('|',
			(SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY id), '')) FROM txn t),
			(SELECT md5(coalesce(string_agg(q::text, ',' ORDER BY id), '')) FROM saf q),
			(SELECT md5(coalesce(string_agg(st::text, ',' ORDER BY mid, tid), '')) FROM terminal_state st))`).Scan(&sum)
		require.NoError(t, err)
		return sum
	}
	before, received := snapshot(), s.Sim.Received()
	reg := draft(t, s, `qps_limit: "1000.00"`, `qps_limit: "1.00"`)
	y, m, d := time.Now().Date()
	r, err := whatif.Run(ctx, s.Journal, s.Registry.Get(), reg, whatif.Options{From: time.Date(y, m, d, 0, 0, 0, 0, time.UTC).AddDate(0, 0, -7), To: time.Date(y, m, d, 0, 0, 0, 0, time.UTC)})
	require.NoError(t, err)
	require.NotZero(t, r.Changed)
	assert.Equal(t, before, snapshot(), "the journal is unchanged")
	assert.Equal(t, received, s.Sim.Received(), "nothing went to the issuer")

	bad := t.TempDir() + "/bad.yaml"
	b, err := os.ReadFile(s.Config.Path)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(bad, []byte(strings.Replace(string(b), `qps_limit: "1000.00"`, `qps_limit: "lots"`, 1)), 0o644))
	_, _, err = app.Load(bad)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "rules.qps_limit")
	assert.Regexp(t, `line \d+`, err.Error())
}
