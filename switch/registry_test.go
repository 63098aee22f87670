package posswitch_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	rc "github.com/shoudan/shoudan/responsecodes"
	"github.com/shoudan/shoudan/switch/switchtest"
	"github.com/shoudan/shoudan/terminals"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// reaches waits until node s decides by registry version v.
func reaches(t *testing.T, s *switchtest.Switch, v int64) {
	t.Helper()
	require.Eventually(t, func() bool { return s.Registry.Get().Version >= v }, 5*time.Second, 5*time.Millisecond,
		"registry version %d did not reach the node (it has %d)", v, s.Registry.Get().Version)
}

// Two nodes share one journal and so one registry: a change made through the registry API on
// one node decides the next terminal purchase on the other; an invalid change is refused with its
// reason and both keep serving the registry of before.
func TestRegistryChangeDecidesOnEveryNode(t *testing.T) {
	a := switchtest.Start(t, switchtest.Options{})
	b := switchtest.Start(t, switchtest.Options{Peer: a})
	require.Equal(t, a.Registry.Get().Version, b.Registry.Get().Version, "both nodes start from the same registry")
	ctx := context.Background()
	const mid = "898310058120001"
	onA := a.SignedOn("10000001")
	tapA := func(amount int64) string { r, err := onA.Purchase(tap, amount); return code(t, r, err) }
	require.Equal(t, rc.IncorrectPIN, tapA(150000), "1500.00 is over the 1000.00 no-PIN limit")

	// the merchant's own 双免 limit, set on node B, decides on node A
	m := *b.Registry.Get().Spec().Merchant(mid)
	m.QPSLimit = "2000.00"
	ch, err := b.RegistryDB.UpdateMerchant(ctx, "ops@b", m, b.Registry.Get().Spec().WhitelistDate(mid))
	require.NoError(t, err)
	assert.Equal(t, []string{"merchant 898310058120001: qps_limit - → 2000.00"}, ch.Lines())
	reaches(t, a, ch.Version)
	assert.Equal(t, rc.Approved, tapA(150000), "the merchant's limit of 2000.00 applies on node A, same connection")
	m.QPSLimit = "100.00"
	ch, err = b.RegistryDB.UpdateMerchant(ctx, "ops@b", m, b.Registry.Get().Spec().WhitelistDate(mid))
	require.NoError(t, err)
	reaches(t, a, ch.Version)
	assert.Equal(t, rc.IncorrectPIN, tapA(15000), "150.00 is over the merchant's 100.00")

	// the whitelist date: registered today is effective tomorrow (03), yesterday is effective today
	const pending = "898310058120008"
	onA9 := a.SignedOn("10000009")
	tap9 := func() string { r, err := onA9.Purchase(tap, 100); return code(t, r, err) }
	require.Equal(t, rc.InvalidMerchant, tap9())
	ch, err = b.RegistryDB.SetWhitelist(ctx, "ops@b", pending, time.Now().AddDate(0, 0, -1).Format("2006-01-02"))
	require.NoError(t, err)
	reaches(t, a, ch.Version)
	assert.Equal(t, rc.Approved, tap9(), "whitelisted yesterday: effective today")
	ch, err = a.RegistryDB.SetWhitelist(ctx, "ops@a", pending, time.Now().Format("2006-01-02"))
	require.NoError(t, err)
	reaches(t, b, ch.Version)
	onB9 := b.SignedOn("10000009")
	r, err := onB9.Purchase(tap, 100)
	assert.Equal(t, rc.InvalidMerchant, code(t, r, err), "whitelisted today, changed on node A: 03 on node B")

	// an invalid change: refused with its reason, nothing changes anywhere
	before := a.Registry.Get().Version
	_, err = b.RegistryDB.SetRules(ctx, "ops@b", terminals.RulesSpec{QPSLimit: "lots"})
	var ce *terminals.ConfigError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, `rules: qps_limit: expected yuan with at most 2 decimals, like 12.34, found "lots": 'l' is not a digit`, err.Error())
	time.Sleep(100 * time.Millisecond)
	assert.Equal(t, before, a.Registry.Get().Version)
	assert.Equal(t, before, b.Registry.Get().Version)
	assert.Equal(t, rc.IncorrectPIN, tapA(15000), "the registry of before keeps serving")

	// a terminal disabled on node B is refused on node A (97), and serves again once enabled
	ch, err = b.RegistryDB.SetTerminalEnabled(ctx, "ops@b", "10000001", mid, false)
	require.NoError(t, err)
	reaches(t, a, ch.Version)
	assert.Equal(t, rc.UnknownTerminal, tapA(100))
	ch, err = b.RegistryDB.SetTerminalEnabled(ctx, "ops@b", "10000001", mid, true)
	require.NoError(t, err)
	reaches(t, a, ch.Version)
	assert.Equal(t, rc.Approved, tapA(100))

	// a terminal registered on node A signs on and trades on node B
	ch, err = a.RegistryDB.RegisterTerminal(ctx, "ops@a", terminals.TerminalSpec{TID: "10000077", MID: mid, Serial: "SN-CONSOLE-77", TMK: "demo"})
	require.NoError(t, err)
	reaches(t, b, ch.Version)
	n := b.SignedOn("10000077")
	r, err = n.Purchase(good, 100)
	assert.Equal(t, rc.Approved, code(t, r, err))
}

// A node's config file is imported into the registry database when it changes: the edit reaches
// the other node too, and a change made through the API is not undone by the import.
func TestConfigFileEditReachesEveryNode(t *testing.T) {
	a := switchtest.Start(t, switchtest.Options{})
	b := switchtest.Start(t, switchtest.Options{Peer: a})
	ctx := context.Background()
	ch, err := b.RegistryDB.SetTerminalQPS(ctx, "ops@b", "10000007", "898310058120001", true)
	require.NoError(t, err)
	reaches(t, a, ch.Version)

	src, err := os.ReadFile(a.Config.Path)
	require.NoError(t, err)
	edited := strings.Replace(string(src), `qps_limit: "1000.00"`, `qps_limit: "1500.00"`, 1)
	require.NoError(t, os.WriteFile(a.Config.Path+".tmp", []byte(edited), 0o644))
	require.NoError(t, os.Rename(a.Config.Path+".tmp", a.Config.Path))
	require.NoError(t, waitReload(t, a))
	v := a.Registry.Get().Version
	reaches(t, b, v)
	assert.Equal(t, int64(150000), b.Registry.Get().Rules.QPSLimit)
	assert.True(t, b.Registry.Get().Terminal("10000007", "898310058120001").QPS, "the API's change stays")

	// the history: node A's first start seeded the database, node B's start with the same file
	// imported nothing, then the API's change and the file edit
	hist, err := b.RegistryDB.History(ctx, 10)
	require.NoError(t, err)
	require.Len(t, hist, 3)
	assert.Equal(t, "ops@b", hist[1].Who)
	assert.Equal(t, v, hist[0].Version)
	assert.Contains(t, hist[0].Who, "file "+a.Config.Path)
	assert.Equal(t, []string{"rules: qps_limit 1000.00 → 1500.00"}, hist[0].Changes)
}
