package app

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/shoudan/shoudan/spec/keys"
	"github.com/shoudan/shoudan/spec/upstream"
	"github.com/shoudan/shoudan/switch/journal"
	"github.com/shoudan/shoudan/switch/metrics"
)

// A zone PIN key change over the issuer link (issue 17), without downtime:
//
//  1. the security module generates a new ZPK and returns it as a block under its KEK and
//     wrapped under the zone master key (ZMK), never in clear;
//  2. every issuer endpoint with a live connection gets a key change (0800, F70 101, F48 the
//     index, check value and wrapped key) and must answer 00 with the same check value;
//  3. only then is the key recorded (table zone_key) and switched to: PIN blocks are translated
//     to it and F53 carries its index. The issuer keeps the keys it received by index, so a PIN
//     block translated under the old key a moment before still verifies. A failed change leaves
//     the old key serving.
//
// Every new connection sends the key in use after signing on, so an issuer that restarted (or an
// endpoint that was down during the change) has it before any PIN reaches it; the other nodes of
// the switch find the new row within zonePoll and switch too. Index 00 is the key agreed out of
// band (issuer.zone_key, a ceremony at both ends); a new ceremony starts the chain again at 00.

// zonePoll is how often a node looks for a key change made by another node (and whether an
// automatic rotation is due).
const zonePoll = 5 * time.Second

// zoneState is the zone PIN key a node translates to.
type zoneState struct {
	id    int64 // zone_key row; 0 = issuer.zone_key itself
	index int
	kcv   string
}

// zoneBase names issuer.zone_key's value (a digest: the block is not secret, but long).
func zoneBase(c *Config) string {
	sum := sha256.Sum256([]byte(strings.TrimSpace(c.Issuer.ZoneKey)))
	return hex.EncodeToString(sum[:8])
}

// zmkBlock is the configured zone master key as a block: "demo" imports the simulated issuer's.
func zmkBlock(c *Config, sec Security) (keys.Block, error) {
	z := strings.TrimSpace(c.Issuer.ZoneMasterKey)
	switch z {
	case "":
		return keys.Block{}, errors.New("issuer.zone_master_key is not set: enter the key shared with the issuer with `shoudan keys import-zmk` (the issuer needs the same key)")
	case "demo":
		k, err := hex.DecodeString(c.Issuer.Sim.ZMK)
		if err != nil || (len(k) != 16 && len(k) != 32) {
			return keys.Block{}, errors.New("issuer.zone_master_key demo: the simulated issuer has no zmk (issuer.sim.zmk, 32 or 64 hex digits)")
		}
		return sec.Import("ZMK", k)
	}
	return keys.ParseBlock(z, "ZMK")
}

func keyChangeOf(k journal.ZoneKey) *upstream.KeyChange {
	return &upstream.KeyChange{Index: k.Index, KCV: k.KCV, Wrapped: k.UnderZMK}
}

// recordedZone is the newest key change since issuer.zone_key was entered (base), if any.
func (a *App) recordedZone(ctx context.Context, base string) (journal.ZoneKey, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return a.Journal.CurrentZoneKey(ctx, base)
}

func (a *App) zoneNow() (zoneState, string) {
	a.zmu.Lock()
	defer a.zmu.Unlock()
	return a.zone, a.zbase
}

// useZone makes the recorded key k the one PIN blocks are translated to (and the one new
// connections send).
func (a *App) useZone(k journal.ZoneKey) error {
	b, err := keys.ParseBlock(k.Block, "ZPK")
	if err == nil {
		err = a.Security.SetZoneKey(b, k.Index)
	}
	if err != nil {
		return fmt.Errorf("zone PIN key index %d (zone_key row %d): %w", k.Index, k.ID, err)
	}
	a.Link.SetKeyChange(keyChangeOf(k))
	a.zmu.Lock()
	a.zone = zoneState{id: k.ID, index: k.Index, kcv: k.KCV}
	a.zmu.Unlock()
	metrics.ZoneKeyIndex.Set(float64(k.Index))
	return nil
}

// ZoneRotation is the outcome of RotateZPK.
type ZoneRotation struct {
	Index     int              `json:"index"`
	KCV       string           `json:"kcv"`
	Endpoints []EndpointResult `json:"endpoints"`
}

// EndpointResult is one issuer endpoint's part in a key change.
type EndpointResult struct {
	Addr  string `json:"addr"`
	Sent  bool   `json:"sent"` // false: no live connection; it gets the key when one signs on
	Error string `json:"error,omitempty"`
}

// RotateZPK changes the zone PIN key over the issuer link (see the top of this file).
func (a *App) RotateZPK(ctx context.Context) (ZoneRotation, error) {
	a.zmu.Lock()
	zmk, zerr, base := a.zmk, a.zmkErr, a.zbase
	a.zmu.Unlock()
	if zerr != nil {
		return ZoneRotation{}, zerr
	}
	var out ZoneRotation
	host, _ := os.Hostname()
	k, err := a.Journal.RotateZoneKey(ctx, base, fmt.Sprintf("%s:%d", host, os.Getpid()), func(cur journal.ZoneKey, ok bool) (journal.ZoneKey, error) {
		next := 1
		if ok {
			next = cur.Index%99 + 1
		}
		zpk, under, err := a.Security.NewZoneKey(zmk)
		if err != nil {
			return journal.ZoneKey{}, err
		}
		kc := upstream.KeyChange{Index: next, KCV: zpk.KCV, Wrapped: under}
		res, err := a.Link.ChangeKey(kc)
		for _, r := range res {
			e := EndpointResult{Addr: r.Addr, Sent: r.Sent}
			if r.Err != nil {
				e.Error = r.Err.Error()
			}
			out.Endpoints = append(out.Endpoints, e)
		}
		if err != nil {
			return journal.ZoneKey{}, fmt.Errorf("key change refused, the zone PIN key index %d stays in use: %w", cur.Index, err)
		}
		return journal.ZoneKey{Index: next, KCV: zpk.KCV, Block: zpk.String(), UnderZMK: under}, nil
	})
	if err != nil {
		metrics.ZoneKeyChanges.WithLabelValues("failed").Inc()
		a.Log.Error("zone PIN key change failed: the key in use stays", "err", err.Error())
		return out, err
	}
	if err := a.useZone(k); err != nil {
		return out, err
	}
	metrics.ZoneKeyChanges.WithLabelValues("done").Inc()
	out.Index, out.KCV = k.Index, k.KCV
	a.Log.Info("zone PIN key changed over the issuer link", "key_index", k.Index, "kcv", k.KCV)
	return out, nil
}

// followZone picks up key changes made by other nodes and rotates when issuer.zpk_rotation is
// due, until ctx ends.
func (a *App) followZone(ctx context.Context) {
	t := time.NewTicker(zonePoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cur, base := a.zoneNow()
		k, ok, err := a.recordedZone(ctx, base)
		if err != nil || ctx.Err() != nil {
			continue
		}
		if ok && k.ID != cur.id {
			if err := a.useZone(k); err != nil {
				a.Log.Error("zone PIN key changed by another node does not load", "err", err.Error())
			} else {
				a.Log.Info("zone PIN key changed by another node", "key_index", k.Index, "kcv", k.KCV, "node", k.Node)
			}
		}
		every := time.Duration(a.zpkEvery.Load())
		if every <= 0 {
			continue
		}
		since := a.startedAt
		if ok {
			since = k.At
		}
		if time.Since(since) >= every {
			if _, err := a.RotateZPK(ctx); err != nil {
				a.Log.Warn("scheduled zone PIN key change: not done, retried at the next check", "err", err.Error())
			}
		}
	}
}

// rotateHandler serves the admin's POST /keys/rotate-zpk: change the zone PIN key now.
func (a *App) rotateHandler(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	res, err := a.RotateZPK(r.Context())
	if err != nil {
		w.WriteHeader(http.StatusConflict)
		json.NewEncoder(w).Encode(map[string]any{"error": err.Error(), "endpoints": res.Endpoints})
		return
	}
	json.NewEncoder(w).Encode(res)
}

// zoneHandler serves the admin's GET /keys/zone: the key in use and the last changes.
func (a *App) zoneHandler(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	cur, base := a.zoneNow()
	hist, err := a.Journal.ZoneKeyHistory(r.Context(), base, 20)
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	type change struct {
		Index int       `json:"index"`
		KCV   string    `json:"kcv"`
		Node  string    `json:"node"`
		At    time.Time `json:"at"`
	}
	out := struct {
		Index   int      `json:"index"`
		KCV     string   `json:"kcv"`
		Changes []change `json:"changes"`
	}{Index: cur.index, KCV: cur.kcv, Changes: []change{}}
	for _, h := range hist {
		out.Changes = append(out.Changes, change{h.Index, h.KCV, h.Node, h.At})
	}
	json.NewEncoder(w).Encode(out)
}
