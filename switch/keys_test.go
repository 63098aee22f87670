package posswitch_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	rc "github.com/shoudan/shoudan/responsecodes"
	"github.com/shoudan/shoudan/spec/keys"
	"github.com/shoudan/shoudan/spec/pos"
	"github.com/shoudan/shoudan/switch/switchtest"
	"github.com/shoudan/shoudan/terminals/device"
	"github.com/stretchr/testify/require"
)

// No key, PIN block or key component is ever in the clear where it could be read later: not in
// the switch's log, not in its metrics, not anywhere in the PostgreSQL data directory (tables,
// WAL, everything), not in the SoftHSM token files. The secrets looked for are what the
// terminals and the simulated issuer hold: the TMK, the working keys of every sign-on layout,
// the zone PIN key and the clear format-0 PIN blocks, as bytes and as hex.
func TestKeysNeverInTheClear(t *testing.T) {
	pgDir := switchtest.TempDir(t)
	pg := switchtest.Postgres(t, pgDir)
	t.Cleanup(func() { _ = pg.Stop() })
	var logs syncBuffer
	s := switchtest.Start(t, switchtest.Options{DatabaseURL: pg.URL(), Log: &logs})
	secrets := [][]byte{device.DemoTMK}
	zk, err := hex.DecodeString(s.Config.Issuer.Sim.ZoneKey)
	require.NoError(t, err)
	secrets = append(secrets, zk)
	for _, c := range []struct{ tid, nmi string }{{"10000001", "003"}, {"10000007", "001"}, {"20000001", "004"}} {
		d := s.Terminal(c.tid)
		d.NMI = c.nmi
		r, err := d.SignOn()
		require.Equal(t, rc.Approved, code(t, r, err), c.tid)
		secrets = append(secrets, d.Keys.TPK, d.Keys.TAK)
		if len(d.Keys.TDK) > 0 {
			secrets = append(secrets, d.Keys.TDK)
		}
		if c.tid == "20000001" {
			continue // the test listener's terminal: sign-on only
		}
		for _, card := range []device.Card{good, device.Swipe(goodPAN, "2912", "123456"), device.Chip(goodPAN, "2912", "999999")} {
			r, err := d.Purchase(card, 100)
			require.NoError(t, err)
			if req := r.Sent.(*pos.PurchaseRequest); len(req.PINBlock) > 0 {
				clear, err := keys.DecryptECB(d.Keys.TPK, req.PINBlock) // PIN XOR PAN: the PIN in clear
				require.NoError(t, err)
				secrets = append(secrets, clear)
			}
		}
	}
	// a zone PIN key change: the new key (known in clear only to the HSM and the issuer) and the
	// zone master key it travelled under are looked for too
	_, err = s.RotateZPK(context.Background())
	require.NoError(t, err)
	d := s.SignedOn("10000001")
	r, err := d.Purchase(good, 100)
	require.Equal(t, rc.Approved, code(t, r, err))
	zmk, err := hex.DecodeString(s.Config.Issuer.Sim.ZMK)
	require.NoError(t, err)
	require.NotNil(t, s.Sim.Issuer.ZoneKeyAt(1))
	secrets = append(secrets, zmk, s.Sim.Issuer.ZoneKeyAt(1))
	resp, err := http.Get("http://" + s.Admin + "/metrics")
	require.NoError(t, err)
	metricsText, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Contains(t, string(metricsText), "shoudan_transactions_total")

	ctx := context.Background()
	c, err := pgx.Connect(ctx, pg.URL())
	require.NoError(t, err)
	var sealed []byte // the control: the scan must find this row's bytes on disk
	require.NoError(t, c.QueryRow(ctx, "SELECT keys_enc FROM terminal_state WHERE tid='10000001'").Scan(&sealed))
	_, err = c.Exec(ctx, "CHECKPOINT") // tables on disk as well as in the WAL
	require.NoError(t, err)
	c.Close(ctx)

	found := func(where string, b []byte) {
		t.Helper()
		low := bytes.ToLower(b)
		for _, sec := range secrets {
			h := []byte(hex.EncodeToString(sec))
			require.False(t, bytes.Contains(b, sec) || bytes.Contains(low, h), "%s holds a clear key or PIN block (%d bytes)", where, len(sec))
		}
	}
	found("the log", []byte(logs.String()))
	found("the metrics", metricsText)
	scanned := map[string]int{}
	for _, dir := range []string{pg.Data, switchtest.TokenDir()} {
		require.NoError(t, filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
			if err != nil || e.IsDir() || !e.Type().IsRegular() {
				return nil
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return nil
			}
			scanned[dir] += len(b)
			if bytes.Contains(b, sealed) {
				scanned["control"]++
			}
			found(p, b)
			return nil
		}))
	}
	require.Greater(t, scanned[pg.Data], 1<<20, "the PostgreSQL data directory was scanned")
	require.Greater(t, scanned[switchtest.TokenDir()], 0, "the token files were scanned")
	require.Greater(t, scanned["control"], 0, "the scan did not find a journaled row's bytes: it would not find a key either")
	require.True(t, strings.Contains(logs.String(), `"layout":"004"`))
}
