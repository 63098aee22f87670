package posswitch_test

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	rc "github.com/shoudan/shoudan/responsecodes"
	"github.com/shoudan/shoudan/switch/app"
	"github.com/shoudan/shoudan/switch/metrics"
	"github.com/shoudan/shoudan/switch/switchtest"
	"github.com/shoudan/shoudan/terminals"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func waitReload(t *testing.T, s *switchtest.Switch) error {
	t.Helper()
	var last error
	select {
	case last = <-s.Reloaded():
	case <-time.After(10 * time.Second):
		t.Fatal("no reload within 10 s of the edit")
	}
	for { // an editor's save can raise several events: the last reload is the one that counts
		select {
		case last = <-s.Reloaded():
		case <-time.After(300 * time.Millisecond):
			return last
		}
	}
}

// TestLiveConfig: editing the config file changes decisions without a restart and without
// closing terminal connections; an invalid file is rejected with its line and the previous
// config keeps serving.
func TestLiveConfig(t *testing.T) {
	s := switchtest.Start(t, switchtest.Options{})
	path := s.Config.Path
	d := s.SignedOn("10000001")
	tapOn := func(tid string, amount int64) string {
		r, err := d.Purchase(tap, amount)
		return code(t, r, err)
	}
	require.Equal(t, rc.IncorrectPIN, tapOn("10000001", 150000), "1500.00 is over the demo's 1000.00 no-PIN limit")

	edit := func(old, new string) {
		b, err := os.ReadFile(path)
		require.NoError(t, err)
		require.Contains(t, string(b), old)
		// saved the way editors do: a new file renamed over the old one
		require.NoError(t, os.WriteFile(path+".tmp", []byte(strings.Replace(string(b), old, new, 1)), 0o644))
		require.NoError(t, os.Rename(path+".tmp", path))
	}
	applied := testutil.ToFloat64(metrics.ConfigReloads.WithLabelValues("applied"))
	edit(`qps_limit: "1000.00"`, `qps_limit: "2000.00"`)
	require.NoError(t, waitReload(t, s))
	assert.Equal(t, rc.Approved, tapOn("10000001", 150000), "the new limit applies on the same connection")
	assert.Greater(t, testutil.ToFloat64(metrics.ConfigReloads.WithLabelValues("applied")), applied)

	// whitelist: a merchant added today is effective tomorrow (03); one registered earlier works
	q := s.SignedOn("10000009")
	r, err := q.Purchase(tap, 100)
	require.Equal(t, rc.InvalidMerchant, code(t, r, err))
	edit(`"898310058120008": 2099-01-01`, `"898310058120008": `+time.Now().AddDate(0, 0, -1).Format("2006-01-02"))
	require.NoError(t, waitReload(t, s))
	r, err = q.Purchase(tap, 100)
	require.Equal(t, rc.Approved, code(t, r, err), "whitelisted yesterday: effective today")
	edit(`"898310058120008": `+time.Now().AddDate(0, 0, -1).Format("2006-01-02"), `"898310058120008": `+time.Now().Format("2006-01-02"))
	require.NoError(t, waitReload(t, s))
	r, err = q.Purchase(tap, 100)
	require.Equal(t, rc.InvalidMerchant, code(t, r, err), "whitelisted today: 03 until tomorrow")

	// an invalid file: rejected with its line and key; the running config keeps serving
	rejectedBefore := testutil.ToFloat64(metrics.ConfigReloads.WithLabelValues("rejected"))
	edit(`qps_limit: "2000.00"`, `qps_limit: "lots"`)
	err = waitReload(t, s)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "rules.qps_limit")
	assert.Regexp(t, `line \d+`, err.Error())
	assert.Greater(t, testutil.ToFloat64(metrics.ConfigReloads.WithLabelValues("rejected")), rejectedBefore)
	assert.Equal(t, int64(200000), s.Registry.Get().Rules.QPSLimit)
	assert.Equal(t, rc.Approved, tapOn("10000001", 150000), "the previous config still serves")

	// a new terminal appears without a restart
	edit(`  - {tid: "10000011"`, `  - {tid: "10000099", mid: "898310058120001", env: production, serial: SN-NEW, tmk: demo}
  - {tid: "10000011"`)
	err = waitReload(t, s)
	require.Error(t, err, "still invalid: the bad qps_limit is there")
	edit(`qps_limit: "lots"`, `qps_limit: "2000.00"`)
	require.NoError(t, waitReload(t, s))
	require.NotNil(t, s.Registry.Get().Terminal("10000099", "898310058120001"))
	n := s.SignedOn("10000099")
	r, err = n.Purchase(good, 100)
	require.Equal(t, rc.Approved, code(t, r, err))
	_ = terminals.Production
}

// TestSaveInPlace: an editor that saves in place truncates the file and writes it again; the
// moment the file is empty (or half-written) is not a config, and is not rejected. A change to a
// key that only a restart applies says so.
func TestSaveInPlace(t *testing.T) {
	logs := &syncBuffer{}
	s := switchtest.Start(t, switchtest.Options{Log: logs})
	path := s.Config.Path
	rejected := testutil.ToFloat64(metrics.ConfigReloads.WithLabelValues("rejected"))
	limit := func(want int64) func() bool {
		return func() bool { return s.Registry.Get().Rules.QPSLimit == want }
	}
	orig, err := os.ReadFile(path)
	require.NoError(t, err)
	for _, gap := range []time.Duration{50 * time.Millisecond, 400 * time.Millisecond} {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
		require.NoError(t, err)
		time.Sleep(gap) // the file is empty meanwhile
		_, err = f.Write(bytes.Replace(orig, []byte(`qps_limit: "1000.00"`), []byte(`qps_limit: "1000.01"`), 1))
		require.NoError(t, err)
		require.NoError(t, f.Close())
		eventually(t, 10*time.Second, "the edit saved in place applies", limit(100001))
		require.NoError(t, os.WriteFile(path, orig, 0o644))
		eventually(t, 10*time.Second, "the file restored applies", limit(100000))
	}
	time.Sleep(500 * time.Millisecond)
	assert.Equal(t, rejected, testutil.ToFloat64(metrics.ConfigReloads.WithLabelValues("rejected")), "no false rejection")
	assert.NotContains(t, logs.String(), "config rejected")
	eventually(t, 5*time.Second, "the tools' copy of the applied config", func() bool {
		applied, err := os.ReadFile(path + app.AppliedSuffix)
		return err == nil && bytes.Equal(applied, orig)
	})

	// a restart-only key: the rest applies, and the log says what needs a restart
	other := switchtest.FreePort(t)
	want := `"needs_restart":"admin.addr (` + s.Config.Admin.Addr + " -> " + other + `)"`
	require.NoError(t, os.WriteFile(path, bytes.Replace(orig, []byte("admin:\n  addr: "+s.Config.Admin.Addr), []byte("admin:\n  addr: "+other), 1), 0o644))
	eventually(t, 10*time.Second, "the log names the key that needs a restart", func() bool { return strings.Contains(logs.String(), want) })
	assert.Contains(t, logs.String(), "need a restart")

	// an empty file that stays empty is rejected, saying so
	require.NoError(t, os.WriteFile(path, nil, 0o644))
	eventually(t, 10*time.Second, "an empty file is rejected", func() bool { return strings.Contains(logs.String(), "the file is empty") })
	assert.Equal(t, int64(100000), s.Registry.Get().Rules.QPSLimit, "the previous config keeps serving")
}
