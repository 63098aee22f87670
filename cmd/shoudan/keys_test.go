package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shoudan/shoudan/spec/keys"
	"github.com/shoudan/shoudan/switch/app"
	"github.com/shoudan/shoudan/switch/journal"
	"github.com/shoudan/shoudan/switch/switchtest"
	"github.com/shoudan/shoudan/terminals"
	"github.com/shoudan/shoudan/terminals/registrydb"
	"github.com/stretchr/testify/require"
)

// The key ceremony as an operator runs it: two components on stdin, their check values and the
// combined one printed, the terminal's tmk in the config replaced by a KB1 block that carries
// the combined key's check value and no clear key. A mistyped component gives another check
// value, stores nothing and leaves the config byte for byte as it was; so does a confirmation
// that does not match.
func TestKeyCeremonyWritesOnlyAWrappedBlock(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "shoudan.yaml")
	y := strings.Replace(string(app.Demo), "data_dir: ./data", "data_dir: "+dir, 1)
	y = strings.Replace(y, `url: ""`, fmt.Sprintf("url: %q", switchtest.Database(t)), 1) // for the registry terminal at the end
	require.NoError(t, os.WriteFile(cfg, []byte(y), 0o644))
	c1, c2 := "0123456789ABCDEF0123456789ABCDEF", "1032547698BADCFE1133557799BBDDFF"
	clear := make([]byte, 16)
	a, b := unhexT(c1), unhexT(c2)
	for i := range clear {
		clear[i] = a[i] ^ b[i]
	}
	k, _ := keys.KCV(clear)
	kcv := strings.ToUpper(hex.EncodeToString(k[:3]))

	var out bytes.Buffer
	wrong := "0123456789ABCDEF0123456789ABCDCF" // one digit mistyped
	err := runCeremony(strings.NewReader(wrong+"\n"+c2+"\n"+kcv+"\n"), &out, cfg, "TMK", "10000002", 2, "", false)
	require.ErrorContains(t, err, "nothing stored")
	after, _ := os.ReadFile(cfg)
	require.Equal(t, y, string(after), "a failed ceremony changed the config")

	out.Reset()
	require.NoError(t, runCeremony(strings.NewReader(c1+"\n"+c2+"\n"+kcv+"\n"), &out, cfg, "TMK", "10000002", 2, "", false))
	require.Contains(t, out.String(), "Combined key check value: "+kcv)
	after, _ = os.ReadFile(cfg)
	require.NotContains(t, string(after), hex.EncodeToString(clear))
	require.NotContains(t, strings.ToUpper(string(after)), strings.ToUpper(hex.EncodeToString(clear)))
	_, reg, err := app.Load(cfg)
	require.NoError(t, err)
	term := reg.Terminal("10000002", "898310053110002")
	require.NotNil(t, term)
	require.False(t, term.DemoTMK)
	require.Equal(t, kcv, term.TMK.KCV)
	require.Equal(t, strings.Count(y, "\n"), strings.Count(string(after), "\n"), "only the one value changed")

	// the zone PIN key the same way, with the check value given up front; a wrong one stores nothing
	out.Reset()
	before := string(after)
	require.Error(t, runCeremony(strings.NewReader(c1+"\n"+c2+"\n"), &out, cfg, "ZPK", "", 2, "000000", false))
	after, _ = os.ReadFile(cfg)
	require.Equal(t, before, string(after))
	require.NoError(t, runCeremony(strings.NewReader(c1+"\n"+c2+"\n"), &out, cfg, "ZPK", "", 2, kcv, false))
	c, _, err := app.Load(cfg)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(c.Issuer.ZoneKey, "KB1.ZPK."), c.Issuer.ZoneKey)

	// the zone master key: AES, 32 or 64 hex digits per component, its check value AES-ECB of zeros
	z1, z2 := c1+c1, c2+c2
	zclear := append(append([]byte(nil), clear...), clear...)
	zkcv, _ := keys.KCVAES(zclear)
	out.Reset()
	require.ErrorContains(t, runCeremony(strings.NewReader(c1+"\n"+c2+"\n"), &out, cfg, "ZMK", "", 2, kcv, false), "nothing stored", "a DES check value for an AES key")
	require.NoError(t, runCeremony(strings.NewReader(z1+"\n"+z2+"\n"), &out, cfg, "ZMK", "", 2, zkcv, false))
	require.Contains(t, out.String(), "32 or 64 hex digits")
	c, _, err = app.Load(cfg)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(c.Issuer.ZoneMasterKey, "KB1.ZMK."), c.Issuer.ZoneMasterKey)
	require.Contains(t, c.Issuer.ZoneMasterKey, "."+zkcv+".")
	after, _ = os.ReadFile(cfg)
	require.NotContains(t, strings.ToUpper(string(after)), strings.ToUpper(hex.EncodeToString(zclear)))
	for _, f := range []string{"pin", "so-pin"} {
		st, err := os.Stat(filepath.Join(dir, "hsm", f))
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o600), st.Mode().Perm(), f)
	}
	registryTerminalCeremony(t, dir, cfg) // the process's one embedded SoftHSM: the same directory
}

func unhexT(s string) []byte { b, _ := hex.DecodeString(s); return b }

// A terminal registered in the registry database only (from the console or `shoudan
// terminals`) gets its key there: the ceremony writes the block to the database, in the audit
// log, and leaves the config file as it was.
func registryTerminalCeremony(t *testing.T, dir, cfg string) {
	yb, err := os.ReadFile(cfg)
	require.NoError(t, err)
	y := string(yb)
	ctx := context.Background()
	_, err = journal.LoadOrCreateKey(filepath.Join(dir, "journal.key")) // as the first serve did
	require.NoError(t, err)
	require.NoError(t, withRegistry(ctx, cfg, func(s *registrydb.Store) error {
		_, err := s.RegisterTerminal(ctx, "test", terminals.TerminalSpec{TID: "30000001", MID: "898310058120001", Serial: "SN-DB-0001", TMK: "demo"})
		return err
	}))
	c1, c2 := "0123456789ABCDEF0123456789ABCDEF", "1032547698BADCFE1133557799BBDDFF"
	a, b := unhexT(c1), unhexT(c2)
	clear := make([]byte, 16)
	for i := range clear {
		clear[i] = a[i] ^ b[i]
	}
	k, _ := keys.KCV(clear)
	kcv := strings.ToUpper(hex.EncodeToString(k[:3]))
	var out bytes.Buffer
	require.NoError(t, runCeremony(strings.NewReader(c1+"\n"+c2+"\n"), &out, cfg, "TMK", "30000001", 2, kcv, false))
	require.Contains(t, out.String(), "registry database")
	after, _ := os.ReadFile(cfg)
	require.Equal(t, y, string(after), "the config file is not where this terminal lives")
	require.NoError(t, withRegistry(ctx, cfg, func(s *registrydb.Store) error {
		r, err := s.Load(ctx)
		require.NoError(t, err)
		term := r.Terminal("30000001", "898310058120001")
		require.NotNil(t, term)
		require.False(t, term.DemoTMK)
		require.Equal(t, kcv, term.TMK.KCV)
		var n int
		require.NoError(t, s.Pool.QueryRow(ctx, "SELECT count(*) FROM audit_log WHERE detail LIKE '%30000001%'").Scan(&n))
		require.Positive(t, n, "the key change is in the audit log")
		return nil
	}))
	require.ErrorContains(t, runCeremony(strings.NewReader(c1+"\n"+c2+"\n"), &out, cfg, "TMK", "39999999", 2, kcv, false), "nor of the registry database")
}
