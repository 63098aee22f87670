package app

import (
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/shoudan/shoudan/spec/keys"
	posswitch "github.com/shoudan/shoudan/switch"
	"github.com/shoudan/shoudan/switch/hsm"
	"github.com/shoudan/shoudan/switch/journal"
	"github.com/shoudan/shoudan/switch/metrics"
	"github.com/shoudan/shoudan/terminals"
	"github.com/shoudan/shoudan/terminals/device"
	"golang.org/x/sys/unix"
)

// Security is the switch's security module with what the app does with it besides the
// transactions: import keys (ceremonies, the demo keys) and set the zone PIN key.
type Security interface {
	posswitch.SecurityModule
	Import(usage string, clear []byte) (keys.Block, error)
	ComponentKCV(usage string, c []byte) (string, error)
	// SetZoneKey makes b the zone PIN key, with its index (F53).
	SetZoneKey(b keys.Block, index int) error
	// NewZoneKey generates a zone PIN key: its block, and the key wrapped under the zone
	// master key zmk for a key change.
	NewZoneKey(zmk keys.Block) (keys.Block, []byte, error)
	KEKID() string
	Close()
}

// OpenSecurity opens the configured security module: the embedded SoftHSM2 token under
// data_dir/hsm unless hsm.module names a PKCS#11 library ("software" only for tests and
// benchmarks).
func OpenSecurity(c *Config, vault *journal.Vault, log *slog.Logger) (Security, error) {
	switch c.HSM.Module {
	case "software":
		log.Warn("hsm.module: software: keys are held in the switch's memory; for tests and benchmarks only, never for card data")
		return &softwareModule{Software: &posswitch.Software{Vault: vault}}, nil
	case "":
		cfg, err := hsm.Embedded(filepath.Join(c.DataDir, "hsm"))
		if err != nil {
			return nil, err
		}
		m, err := hsm.Open(cfg)
		if err != nil {
			return nil, err
		}
		return pkcs11Module{m}, nil
	}
	pin := c.HSM.PIN
	if v := os.Getenv("SHOUDAN_HSM_PIN"); v != "" {
		pin = v
	}
	if c.HSM.PINFile != "" {
		b, err := os.ReadFile(c.HSM.PINFile)
		if err != nil {
			return nil, fmt.Errorf("hsm.pin_file: %w", err)
		}
		pin = strings.TrimSpace(string(b))
	}
	m, err := hsm.Open(hsm.Config{Module: c.HSM.Module, Token: c.HSM.Token, PIN: pin})
	if err != nil {
		return nil, err
	}
	return pkcs11Module{m}, nil
}

type pkcs11Module struct{ *hsm.Module }

func (m pkcs11Module) OpenKeys(sealed []byte) (posswitch.WorkingKeys, error) {
	k, err := m.Module.OpenKeys(sealed)
	if err != nil {
		return nil, err
	}
	return k, nil
}

type softwareModule struct{ *posswitch.Software }

func (s *softwareModule) ComponentKCV(usage string, c []byte) (string, error) {
	if usage == "ZMK" {
		return keys.KCVAES(c)
	}
	kcv, err := keys.KCV(c)
	return fmt.Sprintf("%X", kcv[:min(3, len(kcv))]), err
}

func (s *softwareModule) SetZoneKey(b keys.Block, index int) error {
	if b.KEK != posswitch.SoftwareKEK {
		return fmt.Errorf("zone PIN key: wrapped under KEK %s, not the software module's", b.KEK)
	}
	k, err := s.Vault.Open(b.Wrapped)
	if err != nil {
		return fmt.Errorf("zone PIN key: block does not open")
	}
	s.SetZone(k, index)
	return nil
}

func (s *softwareModule) KEKID() string { return posswitch.SoftwareKEK }
func (s *softwareModule) Close()        {}

// zoneKey is the configured zone PIN key as a block: "demo" imports the simulated issuer's key.
func zoneKey(c *Config, sec Security) (keys.Block, error) {
	z := strings.TrimSpace(c.Issuer.ZoneKey)
	if z != "demo" {
		return keys.ParseBlock(z, "ZPK")
	}
	k, err := hex.DecodeString(c.Issuer.Sim.ZoneKey)
	if err != nil || (len(k) != 16 && len(k) != 24) {
		return keys.Block{}, fmt.Errorf("issuer.zone_key demo: the simulated issuer's zone_key is not a double- or triple-length key")
	}
	if len(c.Issuer.Addrs) > 0 {
		slog.Default().Warn("issuer.zone_key: demo is the simulated issuer's published key; import the real zone PIN key with `shoudan keys import-zpk`")
	}
	return sec.Import("ZPK", k)
}

// startKeys puts the demo TMK (when a terminal uses it) and the zone PIN key into the module and
// checks every terminal's key block against it.
func (a *App) startKeys(reg *terminals.Registry) error {
	demo := 0
	for _, t := range reg.Terminals() {
		if t.DemoTMK {
			demo++
		} else if len(t.TMK.Wrapped) > 0 && t.TMK.KEK != a.Security.KEKID() {
			return fmt.Errorf("terminal %s: its TMK block is wrapped under KEK %s, this security module's KEK is %s: import it again with `shoudan keys import-tmk --tid %s`", t.TID, t.TMK.KEK, a.Security.KEKID(), t.TID)
		}
	}
	// always in the module: a terminal registered later (console, registry database) may use it
	b, err := a.Security.Import("TMK", append([]byte(nil), device.DemoTMK...))
	if err != nil {
		return fmt.Errorf("demo TMK: %w", err)
	}
	a.Switch.DemoTMK = b
	if demo > 0 {
		a.Log.Warn("terminals use the published demo TMK (tmk: demo): import real keys with `shoudan keys import-tmk` before real terminals connect", "terminals", demo, "kcv", b.KCV)
	}
	zb, err := zoneKey(a.Config, a.Security)
	if err != nil {
		return fmt.Errorf("issuer.zone_key: %w", err)
	}
	if err := a.Security.SetZoneKey(zb, 0); err != nil {
		return fmt.Errorf("issuer.zone_key: %w", err)
	}
	a.zmu.Lock()
	a.zone, a.zbase = zoneState{kcv: zb.KCV}, zoneBase(a.Config)
	a.zmu.Unlock()
	a.setZMK(a.Config)
	metrics.ZoneKeyIndex.Set(0)
	return nil
}

// setZMK loads issuer.zone_master_key (a key change needs it; its absence is reported then).
func (a *App) setZMK(c *Config) {
	b, err := zmkBlock(c, a.Security)
	if err == nil && b.KEK != a.Security.KEKID() {
		err = fmt.Errorf("issuer.zone_master_key: its block is wrapped under KEK %s, this security module's KEK is %s: enter it again with `shoudan keys import-zmk`", b.KEK, a.Security.KEKID())
	}
	a.zmu.Lock()
	a.zmk, a.zmkErr = b, err
	a.zmu.Unlock()
	a.zpkEvery.Store(int64(c.Issuer.ZPKRotation))
	if err == nil && strings.TrimSpace(c.Issuer.ZoneMasterKey) == "demo" && len(c.Issuer.Addrs) > 0 {
		a.Log.Warn("issuer.zone_master_key: demo is the simulated issuer's published key; enter the real one with `shoudan keys import-zmk`")
	}
}

// checkKeys validates a reloaded config's keys against the module and applies a changed zone
// PIN key (a rotation: PIN blocks translated from now on use the new key).
func (a *App) checkKeys(c *Config, reg *terminals.Registry) error {
	for _, t := range reg.Terminals() {
		if !t.DemoTMK && len(t.TMK.Wrapped) > 0 && t.TMK.KEK != a.Security.KEKID() {
			return fmt.Errorf("terminal %s: its TMK block is wrapped under KEK %s, not this module's %s", t.TID, t.TMK.KEK, a.Security.KEKID())
		}
	}
	if c.Issuer.ZoneKey != a.Config.Issuer.ZoneKey {
		// a new ceremony: the key agreed out of band, index 00; the key changes since the old
		// one are history
		zb, err := zoneKey(c, a.Security)
		if err == nil {
			err = a.Security.SetZoneKey(zb, 0)
		}
		if err != nil {
			return fmt.Errorf("issuer.zone_key: %w", err)
		}
		a.Link.SetKeyChange(nil)
		a.zmu.Lock()
		a.zone, a.zbase = zoneState{kcv: zb.KCV}, zoneBase(c)
		a.zmu.Unlock()
		a.Config.Issuer.ZoneKey = c.Issuer.ZoneKey
		metrics.ZoneKeyIndex.Set(0)
		a.Log.Info("zone PIN key changed (issuer.zone_key: index 00)", "kcv", zb.KCV)
	}
	if c.Issuer.ZoneMasterKey != a.Config.Issuer.ZoneMasterKey || c.Issuer.ZPKRotation != a.Config.Issuer.ZPKRotation {
		a.setZMK(c)
		a.Config.Issuer.ZoneMasterKey, a.Config.Issuer.ZPKRotation = c.Issuer.ZoneMasterKey, c.Issuer.ZPKRotation
	}
	return nil
}

// NoCoreDumps keeps keys and PINs out of core dumps: the core size limit is set to zero (hard
// limit too, so nothing in the process raises it again), and as root the process is also made
// non-dumpable, which stops other processes from attaching a debugger or reading its memory
// through /proc. (Not as another user: a non-dumpable process cannot read its own /proc/self/fd,
// which the process metrics need.)
func NoCoreDumps() error {
	if err := unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{Cur: 0, Max: 0}); err != nil {
		return fmt.Errorf("core dumps: setrlimit: %w", err)
	}
	if os.Geteuid() != 0 {
		return nil
	}
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("core dumps: prctl: %w", err)
	}
	return nil
}
