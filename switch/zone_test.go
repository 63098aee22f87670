package posswitch_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoudan/shoudan/issuerlink/sim"
	rc "github.com/shoudan/shoudan/responsecodes"
	"github.com/shoudan/shoudan/switch/app"
	"github.com/shoudan/shoudan/switch/switchtest"
	"github.com/stretchr/testify/require"
)

// zoneIndex is the zone PIN key index a node translates to, from its admin port.
func zoneIndex(t *testing.T, s *switchtest.Switch) int {
	t.Helper()
	resp, err := http.Get("http://" + s.Admin + "/keys/zone")
	require.NoError(t, err)
	defer resp.Body.Close()
	var z struct{ Index int }
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&z))
	return z.Index
}

// A zone PIN key change over the issuer link needs no downtime and survives what happens around
// it: PIN purchases run on four terminals throughout two key changes and none is declined; a
// second node of the same deployment starts after them with the newest key and tells the
// issuer at sign-on; a change made on that node reaches the first through the journal; an issuer
// that restarts (forgetting every key it was sent) is sent the key in use before a PIN reaches
// it; and a change the issuer refuses leaves the old key serving.
func TestZoneKeyChangeWithoutDowntime(t *testing.T) {
	a := switchtest.Start(t, switchtest.Options{})
	require.Equal(t, 0, zoneIndex(t, a))
	pinBuy := func(s *switchtest.Switch, tid string) string {
		d := s.SignedOn(tid)
		r, err := d.Purchase(good, 100)
		return code(t, r, err)
	}
	require.Equal(t, rc.Approved, pinBuy(a, "10000001"))

	var stop atomic.Bool
	var wg sync.WaitGroup
	var n, bad atomic.Int64
	var badMu sync.Mutex
	var bads []string
	for _, tid := range []string{"10000001", "10000007", "10000008", "10000006"} {
		d := a.SignedOn(tid)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				r, err := d.Purchase(good, 100)
				n.Add(1)
				if c := code(t, r, err); c != rc.Approved {
					bad.Add(1)
					badMu.Lock()
					if len(bads) < 10 {
						bads = append(bads, tid+":"+c)
					}
					badMu.Unlock()
				}
			}
		}()
	}
	for i := 1; i <= 2; i++ {
		time.Sleep(300 * time.Millisecond)
		res, err := a.RotateZPK(context.Background())
		require.NoError(t, err)
		require.Equal(t, i, res.Index)
		require.Len(t, res.KCV, 6)
		require.Len(t, res.Endpoints, 1)
		require.True(t, res.Endpoints[0].Sent)
	}
	time.Sleep(300 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	require.Zero(t, bad.Load(), "declined during the key changes: %v", bads)
	require.Greater(t, n.Load(), int64(20))
	require.Equal(t, 2, zoneIndex(t, a))

	// a second node on the same journal, to the same issuer
	b := switchtest.Start(t, switchtest.Options{Peer: a, Edit: func(y string) string {
		return strings.Replace(y, "addrs: []", fmt.Sprintf("addrs: [%q]", a.Sim.Addr), 1)
	}})
	require.Equal(t, 2, zoneIndex(t, b))
	require.Equal(t, rc.Approved, pinBuy(b, "10000008"))
	// this one through the admin port, as `shoudan keys rotate-zpk` does it
	resp, err := http.Post("http://"+b.Admin+"/keys/rotate-zpk", "", nil)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	var res app.ZoneRotation
	require.NoError(t, json.Unmarshal(body, &res))
	require.Equal(t, 3, res.Index)
	require.Equal(t, rc.Approved, pinBuy(b, "10000008"))
	require.Eventually(t, func() bool { return zoneIndex(t, a) == 3 }, 15*time.Second, 100*time.Millisecond, "the first node did not take the other node's key change")
	require.Equal(t, rc.Approved, pinBuy(a, "10000001"))

	// the issuer restarts and knows only its configured key (index 00)
	addr := a.Sim.Addr
	a.Sim.Close(context.Background())
	cfg := a.Config.Issuer.Sim
	cfg.LedgerDir = "none"
	is, err := cfg.Build()
	require.NoError(t, err)
	srv := sim.NewServer(is, sim.Faults{}, nil)
	require.NoError(t, srv.Start(addr, "127.0.0.1:0"))
	a.Sim = srv // closed by the test's cleanup
	require.Eventually(t, func() bool { return a.Link.Up() && b.Link.Up() }, 15*time.Second, 20*time.Millisecond)
	require.Equal(t, rc.Approved, pinBuy(a, "10000001"))
	require.Equal(t, rc.Approved, pinBuy(b, "10000008"))

	// a zone master key the issuer does not hold: the key change is refused (96) and nothing
	// changes
	other, err := a.Security.Import("ZMK", []byte("0123456789abcdef0123456789abcdef"))
	require.NoError(t, err)
	y, err := os.ReadFile(a.Config.Path)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(a.Config.Path+".tmp", []byte(strings.Replace(string(y), "zone_master_key: demo", "zone_master_key: "+other.String(), 1)), 0o644))
	require.NoError(t, os.Rename(a.Config.Path+".tmp", a.Config.Path))
	require.NoError(t, waitReload(t, a))
	res, err = a.RotateZPK(context.Background())
	require.ErrorContains(t, err, `answered "96"`)
	require.ErrorContains(t, err, "index 3 stays in use")
	require.Equal(t, 3, zoneIndex(t, a))
	require.Equal(t, rc.Approved, pinBuy(a, "10000001"))
	var rows int
	require.NoError(t, a.Journal.Pool.QueryRow(context.Background(), "SELECT count(*) FROM zone_key").Scan(&rows))
	require.Equal(t, 3, rows)
}
