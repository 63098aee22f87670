package refunds_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	rc "github.com/shoudan/shoudan/responsecodes"
	"github.com/shoudan/shoudan/switch/app"
	"github.com/shoudan/shoudan/switch/journal"
	"github.com/shoudan/shoudan/switch/refunds"
	"github.com/shoudan/shoudan/switch/switchtest"
	"github.com/shoudan/shoudan/terminals/device"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestNotifySurvivesKill: notifications queued (their receiver failing) when the switch is
// SIGKILLed are delivered after it restarts, each acknowledged once.
func TestNotifySurvivesKill(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the binary")
	}
	ctx := context.Background()
	bin := switchtest.Binary(t)
	url := switchtest.Database(t)
	dir := switchtest.TempDir(t)
	secret, err := journal.LoadOrCreateKey(filepath.Join(dir, "journal.key"))
	require.NoError(t, err)
	vault, err := journal.NewVault(secret)
	require.NoError(t, err)
	j, err := journal.Open(ctx, url, vault)
	require.NoError(t, err)
	setup := &refunds.Service{Journal: j, Log: slog.New(slog.DiscardHandler)}

	var up atomic.Bool
	var mu sync.Mutex
	acks := map[string]int{}
	failed := map[string]int{}
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, q *http.Request) {
		b, _ := io.ReadAll(q.Body)
		var n refunds.Notice
		_ = json.Unmarshal(b, &n)
		mu.Lock()
		defer mu.Unlock()
		if !up.Load() {
			failed[n.ID]++
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		acks[n.ID]++
	}))
	defer rcv.Close()
	key, err := setup.CreateKey(ctx, mid, "test")
	require.NoError(t, err)
	require.NoError(t, setup.SaveSettings(ctx, &refunds.Settings{MID: mid, Callbacks: []string{rcv.URL}}, "test"))
	j.Close()

	prod, api := switchtest.FreePort(t), switchtest.FreePort(t)
	y := strings.Replace(fast(string(app.Demo)), "timeout: 5s", "timeout: 1s", 1)
	for _, r := range [][2]string{
		{"addr: 127.0.0.1:5000", "addr: " + prod},
		{"addr: 127.0.0.1:5001", "addr: 127.0.0.1:0"},
		{"addr: 127.0.0.1:9100", "addr: 127.0.0.1:0"},
		{"addr: 127.0.0.1:9200", "addr: " + api},
		{"control: 127.0.0.1:5080", "control: 127.0.0.1:0"},
		{`url: ""`, fmt.Sprintf("url: %q", url)},
	} {
		require.Contains(t, y, r[0])
		y = strings.Replace(y, r[0], r[1], 1)
	}
	cfg := filepath.Join(dir, "shoudan.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(y), 0o644))
	logf, err := os.Create(filepath.Join(dir, "switch.log"))
	require.NoError(t, err)
	defer logf.Close()
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			lines := strings.Split(string(b), "\n")
			t.Logf("the switch's log (last lines):\n%s", strings.Join(lines[max(0, len(lines)-40):], "\n"))
		}
	})
	run := func() *exec.Cmd {
		cmd := exec.Command(bin, "serve", "-c", cfg)
		cmd.Stdout, cmd.Stderr = logf, logf
		cmd.Env = append(os.Environ(), "SHOUDAN_DATA_DIR="+dir)
		require.NoError(t, cmd.Start())
		t.Cleanup(func() {
			if cmd.ProcessState == nil {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
			}
		})
		eventually(t, 30*time.Second, "the switch listens", func() bool {
			c, err := net.Dial("tcp", api)
			if err == nil {
				c.Close()
			}
			return err == nil
		})
		return cmd
	}
	cmd := run()

	d, err := device.Dial(prod, device.Config{TID: "10000001", MID: mid, Serial: "SN-DEMO-0001", TMK: switchtest.DemoTMK, Timeout: 5 * time.Second})
	require.NoError(t, err)
	defer d.Close()
	r, err := d.SignOn()
	require.NoError(t, err)
	require.Equal(t, rc.Approved, r.Code())
	c := apiCall{base: "http://" + api, keyID: key.ID, secret: key.Secret}
	var ids []string
	for i := range 2 {
		p, err := d.Purchase(good, int64(1000+i))
		require.NoError(t, err)
		require.Equal(t, rc.Approved, p.Code())
		st, m, raw := c.do(t, "/v1/refunds", map[string]any{"out_refund_no": fmt.Sprintf("V-%d", i), "kind": "void",
			"original_rrn": p.Resp.RRN, "original_date": time.Now().Format("2006-01-02")})
		require.Equal(t, 200, st, "%s", raw)
		require.Equal(t, "succeeded", m["state"], "%s", raw)
		ids = append(ids, fmt.Sprintf("refund/%v/succeeded", m["refund_id"]))
	}
	eventually(t, 10*time.Second, "both notifications failed at least once (queued)", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return failed[ids[0]] > 0 && failed[ids[1]] > 0
	})
	pool, err := pgxpool.New(ctx, url)
	require.NoError(t, err)
	defer pool.Close()
	eventually(t, 10*time.Second, "both are queued for another round", func() bool {
		var n int
		_ = pool.QueryRow(ctx, "SELECT count(*) FROM notification WHERE state='pending' AND rounds > 0").Scan(&n)
		return n == 2
	})
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	_ = cmd.Wait()
	up.Store(true)
	cmd = run()
	defer func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()
	eventually(t, 20*time.Second, "both delivered after the restart", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return acks[ids[0]] > 0 && acks[ids[1]] > 0
	})
	time.Sleep(time.Second)
	mu.Lock()
	assert.Equal(t, 1, acks[ids[0]], "acknowledged once")
	assert.Equal(t, 1, acks[ids[1]], "acknowledged once")
	mu.Unlock()
}
