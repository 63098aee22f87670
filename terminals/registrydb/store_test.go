package registrydb_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/shoudan/shoudan/spec/keys"
	"github.com/shoudan/shoudan/switch/app"
	"github.com/shoudan/shoudan/switch/journal"
	"github.com/shoudan/shoudan/switch/switchtest"
	"github.com/shoudan/shoudan/terminals"
	"github.com/shoudan/shoudan/terminals/registrydb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
)

func TestMain(m *testing.M) { switchtest.Main(m) }

var key = []byte("0123456789abcdef0123456789abcdef")

// node is one switch node's view: its own pool on the shared database, its own snapshot.
type node struct {
	store *registrydb.Store
	reg   *terminals.Holder
	j     *journal.Journal
}

func openNode(t testing.TB, url string) *node {
	t.Helper()
	v, err := journal.NewVault(key)
	require.NoError(t, err)
	j, err := journal.Open(context.Background(), url, v)
	require.NoError(t, err)
	t.Cleanup(j.Close)
	n := &node{store: registrydb.New(j.Pool, j.Vault), j: j}
	r, err := n.store.Load(context.Background())
	require.NoError(t, err)
	n.reg = terminals.NewHolder(r)
	n.store.Local = n.reg
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); n.store.Follow(ctx, n.reg, slog.New(slog.DiscardHandler), nil) }()
	t.Cleanup(func() { cancel(); <-done })
	return n
}

func demoSpec(t testing.TB, edit func(string) string) *terminals.Spec {
	t.Helper()
	y := string(app.Demo)
	if edit != nil {
		y = edit(y)
	}
	var doc yaml.Node
	require.NoError(t, yaml.Unmarshal([]byte(y), &doc))
	s, err := terminals.ParseSpec(&doc)
	require.NoError(t, err)
	return s
}

func seeded(t *testing.T) (a, b *node) {
	url := switchtest.Database(t)
	a, b = openNode(t, url), openNode(t, url)
	ch, err := a.store.ImportFile(context.Background(), "test seed", demoSpec(t, nil))
	require.NoError(t, err)
	waitVersion(t, b, ch.Version)
	return a, b
}

func waitVersion(t *testing.T, n *node, v int64) *terminals.Registry {
	t.Helper()
	require.Eventually(t, func() bool { return n.reg.Get().Version >= v }, 5*time.Second, 5*time.Millisecond, "the change did not reach the node")
	return n.reg.Get()
}

const demoMID = "898310058120001"

// A change through the API on either node reaches the other's snapshot; the one that made it
// decides by it as soon as the call returns.
func TestTwoNodesSeeEachOthersChanges(t *testing.T) {
	a, b := seeded(t)
	ctx := context.Background()
	ch, err := a.store.SetRules(ctx, "alice", terminals.RulesSpec{QPSLimit: "500.00"})
	require.NoError(t, err)
	assert.Equal(t, int64(50000), a.reg.Get().Rules.QPSLimit, "the node that changed it decides by it at once")
	assert.Equal(t, int64(50000), waitVersion(t, b, ch.Version).Rules.QPSLimit)
	assert.Contains(t, ch.Lines(), "rules: qps_limit 1000.00 → 500.00")

	m := *b.reg.Get().Spec().Merchant(demoMID)
	m.QPSLimit, m.MCC = "300.00", "5813"
	ch, err = b.store.UpdateMerchant(ctx, "bob", m, "2026-03-01")
	require.NoError(t, err)
	got := waitVersion(t, a, ch.Version).Merchant(demoMID)
	assert.Equal(t, int64(30000), got.QPSLimit)
	assert.Equal(t, "5813", got.MCC)
	assert.Equal(t, "2026-03-01", got.QPSRegistered.Format("2006-01-02"))

	ch, err = a.store.SetTerminalEnabled(ctx, "alice", "10000001", demoMID, false)
	require.NoError(t, err)
	assert.False(t, waitVersion(t, b, ch.Version).Terminal("10000001", demoMID).Enabled)
	assert.Equal(t, []string{"terminal 10000001 of merchant 898310058120001: enabled true → false"}, ch.Lines())

	block := keys.Block{Usage: "TMK", KEK: "0A1B2C3D", KCV: "08D7B4", Wrapped: bytes.Repeat([]byte{0x5A}, 24)}.String()
	ch, err = b.store.RegisterTerminal(ctx, "bob", terminals.TerminalSpec{TID: "10000099", MID: demoMID, Serial: "SN-NEW", TMK: block})
	require.NoError(t, err)
	nt := waitVersion(t, a, ch.Version).Terminal("10000099", demoMID)
	require.NotNil(t, nt)
	assert.Equal(t, block, nt.TMKText(), "the wrapped block as registered")
	_, err = b.store.RegisterTerminal(ctx, "bob", terminals.TerminalSpec{TID: "10000098", MID: demoMID, Serial: "SN-NEW", TMK: "00112233445566778899AABBCCDDEEFF"})
	require.Error(t, err, "a clear TMK is registered")

	hist, err := a.store.History(ctx, 10)
	require.NoError(t, err)
	require.Len(t, hist, 5)
	assert.Equal(t, "bob", hist[0].Who)
	assert.Equal(t, "test seed", hist[4].Who)
}

func hexs(b []byte) string {
	const d = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, d[c>>4], d[c&15])
	}
	return string(out)
}

// An invalid change is refused with the field, what was expected and what was found; nothing
// is written and the old registry keeps serving on every node.
func TestInvalidChangeRefused(t *testing.T) {
	a, b := seeded(t)
	ctx := context.Background()
	before, err := a.store.Version(ctx)
	require.NoError(t, err)
	m := *a.reg.Get().Spec().Merchant(demoMID)
	m.MCC = "58A"
	_, err = a.store.UpdateMerchant(ctx, "alice", m, "")
	var ce *terminals.ConfigError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, "mcc", ce.Field)
	assert.Equal(t, "merchant 898310058120001: mcc: expected a 4-digit MCC, found \"58A\"", err.Error())

	_, err = a.store.SetRules(ctx, "alice", terminals.RulesSpec{QPSLimit: "12.345"})
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, "rules: qps_limit: expected yuan with at most 2 decimals, like 12.34, found \"12.345\": 3 decimals (the fen is the smallest unit; nothing is rounded)", err.Error())

	_, err = a.store.SetWhitelist(ctx, "alice", demoMID, "tomorrow")
	require.ErrorAs(t, err, &ce)
	assert.Contains(t, err.Error(), `expected a date YYYY-MM-DD, found "tomorrow"`)

	_, err = a.store.RegisterTerminal(ctx, "alice", terminals.TerminalSpec{TID: "10000098", MID: "898310058129999", Serial: "X", TMK: "demo"})
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, "mid", ce.Field)

	_, err = a.store.RegisterTerminal(ctx, "alice", terminals.TerminalSpec{TID: "10000001", MID: demoMID, Serial: "X", TMK: "demo"})
	require.ErrorIs(t, err, registrydb.ErrExists)
	_, err = a.store.SetTerminalQPS(ctx, "alice", "1234", demoMID, true)
	require.ErrorIs(t, err, registrydb.ErrNotFound)

	after, err := a.store.Version(ctx)
	require.NoError(t, err)
	assert.Equal(t, before, after, "nothing was written")
	assert.Equal(t, "5812", b.reg.Get().Merchant(demoMID).MCC)
	assert.Equal(t, int64(100000), b.reg.Get().Rules.QPSLimit)

	// a row edited by hand into something invalid: the nodes refuse it and keep serving
	_, err = a.j.Pool.Exec(ctx, "UPDATE merchant SET mcc = 'xx' WHERE mid = $1", demoMID)
	require.NoError(t, err)
	_, err = a.j.Pool.Exec(ctx, "INSERT INTO registry_change (who, changes) VALUES ('psql', '{}'); NOTIFY registry")
	require.NoError(t, err)
	_, err = b.store.Load(ctx)
	require.ErrorAs(t, err, &ce)
	time.Sleep(200 * time.Millisecond)
	assert.Equal(t, "5812", b.reg.Get().Merchant(demoMID).MCC, "the previous snapshot keeps serving")
}

// The audit hook runs in the change's transaction: its failure undoes the change.
func TestAuditHookInTransaction(t *testing.T) {
	a, _ := seeded(t)
	ctx := context.Background()
	var seen []string
	a.store.Audit = func(ctx context.Context, tx pgx.Tx, c *registrydb.Change) error {
		seen = append(seen, c.Who+": "+strings.Join(c.Lines(), "; "))
		var n int
		if err := tx.QueryRow(ctx, "SELECT count(*) FROM terminal WHERE NOT enabled").Scan(&n); err != nil {
			return err
		}
		if n > 1 {
			return errors.New("audit log unavailable")
		}
		return nil
	}
	_, err := a.store.SetTerminalEnabled(ctx, "carol", "10000002", "898310053110002", false)
	require.NoError(t, err)
	_, err = a.store.SetTerminalEnabled(ctx, "carol", "10000003", "898310060110003", false)
	require.ErrorContains(t, err, "audit log unavailable")
	r, err := a.store.Load(ctx)
	require.NoError(t, err)
	assert.False(t, r.Terminal("10000002", "898310053110002").Enabled)
	assert.True(t, r.Terminal("10000003", "898310060110003").Enabled, "the change whose audit failed was rolled back")
	assert.Equal(t, []string{
		"carol: terminal 10000002 of merchant 898310053110002: enabled true → false",
		"carol: terminal 10000003 of merchant 898310060110003: enabled true → false"}, seen)
}

// The master keys are sealed in the database; the export carries them sealed and imports back.
func TestKeysSealedAndExportRoundTrip(t *testing.T) {
	a, _ := seeded(t)
	ctx := context.Background()
	var raw []byte
	require.NoError(t, a.j.Pool.QueryRow(ctx, "SELECT tmk_enc FROM terminal WHERE tid='10000001'").Scan(&raw))
	assert.NotContains(t, hexs(raw), "0123456789abcdeffedcba9876543210")
	assert.NotContains(t, string(raw), "demo", "sealed, not as written")
	var js string
	require.NoError(t, a.j.Pool.QueryRow(ctx, "SELECT spec::text FROM registry_import").Scan(&js))
	assert.NotContains(t, strings.ToLower(js), "0123456789abcdeffedcba9876543210", "the import record holds no clear key")

	_, err := a.store.SetRules(ctx, "alice", terminals.RulesSpec{QPSLimit: "800.00", RefundWindowDays: ptr(30)})
	require.NoError(t, err)
	spec, v, err := a.store.Export(ctx)
	require.NoError(t, err)
	out, err := spec.ReplaceSections(nil)
	require.NoError(t, err)
	assert.NotContains(t, strings.ToLower(string(out)), "0123456789abcdeffedcba9876543210", "no key in clear in the export")
	assert.Contains(t, string(out), "tmk_sealed:")
	assert.Contains(t, string(out), `qps_limit: "800.00"`)

	// into a fresh database of the same deployment: the same registry
	c := openNode(t, switchtest.Database(t))
	var doc yaml.Node
	require.NoError(t, yaml.Unmarshal(out, &doc))
	in, err := terminals.ParseSpec(&doc)
	require.NoError(t, err)
	_, err = c.store.Import(ctx, "import", in)
	require.NoError(t, err)
	got, err := c.store.Load(ctx)
	require.NoError(t, err)
	want, err := a.store.Load(ctx)
	require.NoError(t, err)
	assert.Empty(t, terminals.Diff(want, got), "export then import gives the same registry")
	assert.Equal(t, want.Terminal("10000001", demoMID).TMK, got.Terminal("10000001", demoMID).TMK)
	_, n := got.LoadTemplate()
	assert.Equal(t, 12000, n)
	assert.Greater(t, v, int64(0))

	// exported under another deployment's journal key: refused, naming the field
	other, err := journal.NewVault([]byte("another key of thirty-two bytes!"))
	require.NoError(t, err)
	os := registrydb.New(c.j.Pool, other)
	_, err = os.Import(ctx, "import", in)
	var ce *terminals.ConfigError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, "tmk_sealed", ce.Field)
}

func ptr[T any](v T) *T { return &v }

// A file edit imports what the file changed since its last import and leaves changes made
// through the API alone; an unchanged file imports nothing.
func TestFileImportAppliesOnlyFileChanges(t *testing.T) {
	a, _ := seeded(t)
	ctx := context.Background()
	m := *a.reg.Get().Spec().Merchant("898310058120004")
	m.Direct = terminals.Bool(true)
	_, err := a.store.UpdateMerchant(ctx, "console", m, "")
	require.NoError(t, err)

	ch, err := a.store.ImportFile(ctx, "file", demoSpec(t, nil))
	require.NoError(t, err)
	assert.True(t, ch.Empty(), "the same file again: nothing to import, got %v", ch.Lines())

	ch, err = a.store.ImportFile(ctx, "file", demoSpec(t, func(y string) string {
		y = strings.Replace(y, `qps_limit: "1000.00"`, `qps_limit: "2000.00"`, 1)
		return strings.Replace(y, `  - {tid: "10000011"`, `  - {tid: "10000012", mid: "898310058120010", serial: SN-X, tmk: demo}
  - {tid: "10000011"`, 1)
	}))
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{"rules: qps_limit 1000.00 → 2000.00", "terminal 10000012 of merchant 898310058120010: added"}, ch.Lines())
	r := a.reg.Get()
	assert.True(t, r.Merchant("898310058120004").Direct, "the console's change stays")
	assert.Equal(t, int64(200000), r.Rules.QPSLimit)

	// the file drops the terminal again: removed
	ch, err = a.store.ImportFile(ctx, "file", demoSpec(t, func(y string) string {
		return strings.Replace(y, `qps_limit: "1000.00"`, `qps_limit: "2000.00"`, 1)
	}))
	require.NoError(t, err)
	assert.Equal(t, []string{"terminal 10000012 of merchant 898310058120010: removed"}, ch.Lines())
	_ = os.Getenv
}

// Exporting into the config file writes the database's registry into its registry sections and
// keeps the rest; the file is still a valid config, and importing it changes nothing.
func TestExportIntoConfigThenImportIsEmpty(t *testing.T) {
	a, _ := seeded(t)
	ctx := context.Background()
	_, err := a.store.SetWhitelist(ctx, "console", "898310058120008", "2026-06-01")
	require.NoError(t, err)
	_, err = a.store.SetTerminalEnabled(ctx, "console", "10000007", demoMID, false)
	require.NoError(t, err)
	spec, _, err := a.store.Export(ctx)
	require.NoError(t, err)
	out, err := spec.ReplaceSections(app.Demo)
	require.NoError(t, err)
	assert.Contains(t, string(out), "listeners:", "the other sections stay")
	assert.Contains(t, string(out), `"898310058120008": 2026-06-01`)
	_, fileReg, err := app.Parse(out)
	require.NoError(t, err, "the exported config is valid")
	ch, err := a.store.ImportFile(ctx, "file", fileReg.Spec())
	require.NoError(t, err)
	assert.True(t, ch.Empty(), "nothing to import: %v", ch.Lines())
	r, err := a.store.Load(ctx)
	require.NoError(t, err)
	assert.False(t, r.Terminal("10000007", demoMID).Enabled)
}

// The snapshot is safe to lose its feed: when the LISTEN connection drops, a change committed
// meanwhile (its notification lost) is picked up on reconnection.
func TestFollowSurvivesLostListenConnection(t *testing.T) {
	a, b := seeded(t)
	ctx := context.Background()
	kill := func() int {
		var n int
		require.NoError(t, a.j.Pool.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
			WHERE datname = current_database() AND query = 'LISTEN registry'`).Scan(&n))
		return n
	}
	require.Eventually(t, func() bool { return kill() == 2 }, 5*time.Second, 50*time.Millisecond, "both nodes' LISTEN connections")
	ch, err := a.store.SetRules(ctx, "alice", terminals.RulesSpec{QPSLimit: "700.00"})
	require.NoError(t, err)
	assert.Equal(t, int64(70000), waitVersion(t, b, ch.Version).Rules.QPSLimit, "caught up after reconnecting")
	// and it follows again afterwards
	ch, err = a.store.SetRules(ctx, "alice", terminals.RulesSpec{QPSLimit: "600.00"})
	require.NoError(t, err)
	assert.Equal(t, int64(60000), waitVersion(t, b, ch.Version).Rules.QPSLimit)
}
