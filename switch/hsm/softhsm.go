package hsm

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/miekg/pkcs11"
)

// EmbeddedLabel is the label of the token `serve` creates under its data directory.
const EmbeddedLabel = "shoudan"

// SoftHSMModule finds the SoftHSM2 library: $SHOUDAN_SOFTHSM_MODULE, then the Debian and
// /usr/local locations.
func SoftHSMModule() (string, error) {
	cands := []string{os.Getenv("SHOUDAN_SOFTHSM_MODULE"), "/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
		"/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so", "/usr/local/lib/softhsm/libsofthsm2.so"}
	for _, c := range cands {
		if c == "" {
			continue
		}
		if _, err := os.Stat(c); err == nil {
			return c, nil
		}
	}
	return "", errors.New("no SoftHSM2 library found (looked in $SHOUDAN_SOFTHSM_MODULE, /usr/lib/softhsm, /usr/local/lib/softhsm): install it (Debian: apt-get install softhsm2) or configure hsm.module, hsm.token and hsm.pin for another PKCS#11 HSM")
}

var embedded struct {
	sync.Mutex
	conf string // the SOFTHSM2_CONF this process initialised SoftHSM with
}

// Embedded prepares SoftHSM2 under dir the way the switch owns a private PostgreSQL: its own
// softhsm2.conf and token directory, a token labelled "shoudan" initialised on first use, the
// user PIN from $SHOUDAN_HSM_PIN or else dir/pin (0600, random on first use) and the SO PIN in
// dir/so-pin (0600). One process can serve one embedded token directory (SoftHSM reads its
// config once, at C_Initialize).
func Embedded(dir string) (Config, error) {
	lib, err := SoftHSMModule()
	if err != nil {
		return Config{}, err
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return Config{}, err
	}
	tokens := filepath.Join(dir, "tokens")
	if err := os.MkdirAll(tokens, 0o700); err != nil {
		return Config{}, fmt.Errorf("hsm: %w", err)
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	body := "# written by shoudan: the embedded security module's SoftHSM2 config\ndirectories.tokendir = " + tokens + "\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n"
	if b, err := os.ReadFile(conf); err != nil || string(b) != body {
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			return Config{}, fmt.Errorf("hsm: %w", err)
		}
	}
	embedded.Lock()
	if embedded.conf != "" && embedded.conf != conf {
		embedded.Unlock()
		return Config{}, fmt.Errorf("hsm: this process already runs the embedded SoftHSM of %s; configure hsm.module/hsm.token/hsm.pin to share one token directory", filepath.Dir(embedded.conf))
	}
	embedded.conf = conf
	embedded.Unlock()
	if err := os.Setenv("SOFTHSM2_CONF", conf); err != nil {
		return Config{}, err
	}
	pin := os.Getenv("SHOUDAN_HSM_PIN")
	if pin == "" {
		if pin, err = secretFile(filepath.Join(dir, "pin")); err != nil {
			return Config{}, err
		}
	}
	so, err := secretFile(filepath.Join(dir, "so-pin"))
	if err != nil {
		return Config{}, err
	}
	if err := InitToken(lib, EmbeddedLabel, so, pin); err != nil {
		return Config{}, err
	}
	return Config{Module: lib, Token: EmbeddedLabel, PIN: pin}, nil
}

// secretFile reads a PIN file, creating it (0600) with a random PIN on first use.
func secretFile(path string) (string, error) {
	if b, err := os.ReadFile(path); err == nil {
		s := strings.TrimSpace(string(b))
		if s == "" {
			return "", fmt.Errorf("%s: empty PIN file", path)
		}
		return s, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	s := hex.EncodeToString(b)
	return s, os.WriteFile(path, []byte(s+"\n"), 0o600)
}

// InitToken initialises a token labelled label on a free slot of module (SO PIN so, user PIN
// pin) unless one with that label exists. Real HSMs are initialised by their own tools; this is
// for SoftHSM.
func InitToken(module, label, so, pin string) error {
	c, err := library(module)
	if err != nil {
		return err
	}
	if _, ok, err := findSlot(c, label); err != nil || ok {
		return err
	}
	slots, err := c.GetSlotList(false)
	if err != nil {
		return fmt.Errorf("hsm: C_GetSlotList: %w", err)
	}
	free, found := uint(0), false
	for _, s := range slots {
		if ti, err := c.GetTokenInfo(s); err == nil && ti.Flags&pkcs11.CKF_TOKEN_INITIALIZED == 0 {
			free, found = s, true
			break
		}
	}
	if !found {
		return fmt.Errorf("hsm: no free slot to initialise token %q", label)
	}
	if err := c.InitToken(free, so, label); err != nil {
		return fmt.Errorf("hsm: C_InitToken %q: %w", label, err)
	}
	slot, ok, err := findSlot(c, label) // SoftHSM renumbers the slot once its token is initialised
	if err != nil || !ok {
		return fmt.Errorf("hsm: token %q not found after initialising it", label)
	}
	s, err := c.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		return fmt.Errorf("hsm: C_OpenSession: %w", err)
	}
	defer c.CloseSession(s)
	if err := c.Login(s, pkcs11.CKU_SO, so); err != nil {
		return fmt.Errorf("hsm: SO login: %w", err)
	}
	defer c.Logout(s)
	if err := c.InitPIN(s, pin); err != nil {
		return fmt.Errorf("hsm: C_InitPIN: %w", err)
	}
	return nil
}
