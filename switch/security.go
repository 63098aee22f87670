package posswitch

import (
	"crypto/hmac"
	"crypto/rand"
	"fmt"
	"sync"

	"github.com/shoudan/shoudan/spec/keys"
	"github.com/shoudan/shoudan/switch/journal"
)

// SecurityModule is everything that touches keys or PINs. The switch holds no clear key: a TMK
// reaches it as a block wrapped under the module's KEK, working keys as the module's sealed form,
// and every MAC and PIN translation is a call into the module. The default is package hsm (a
// PKCS#11 token, SoftHSM2 under the data directory unless an HSM is configured); Software is for
// unit tests and the software-versus-HSM benchmark only.
type SecurityModule interface {
	// SignOn generates fresh working keys for a sign-on layout (60.3 001, 003, 004) and returns
	// the field-62 key block (the keys under the terminal's TMK, each with its check value) and
	// the keys sealed for the journal.
	SignOn(tmk keys.Block, nmi string) (f62, sealed []byte, err error)
	// OpenKeys returns the working keys sealed at a sign-on.
	OpenKeys(sealed []byte) (WorkingKeys, error)
}

// WorkingKeys are a signed-on terminal's keys as the module holds them.
type WorkingKeys interface {
	// MAC is the CUP "ECB" MAC of protocol.md §6 under the TAK.
	MAC(mab []byte) ([8]byte, error)
	// TranslatePIN re-encrypts a format-0 PIN block from the TPK to the zone PIN key and
	// returns the zone PIN key's index (F53 upstream).
	TranslatePIN(block []byte, pan string) ([]byte, int, error)
}

// Software is a software security module for unit tests and benchmarks: keys in the switch's
// memory, sealed under the journal vault. Never the default.
type Software struct {
	Vault *journal.Vault
	mu    sync.RWMutex
	zone  []byte
	index int
}

// SetZone sets the zone PIN key (clear: this is the software module) and its index.
func (s *Software) SetZone(k []byte, index int) {
	s.mu.Lock()
	s.zone, s.index = k, index
	s.mu.Unlock()
}

// SoftwareKEK is the KEK id of blocks sealed by the software module.
const SoftwareKEK = "SOFTWARE"

// Import seals a clear key as a block (what a ceremony does with the software module).
func (s *Software) Import(usage string, clear []byte) (keys.Block, error) {
	if usage == "ZMK" {
		kcv, err := keys.KCVAES(clear)
		if err != nil {
			return keys.Block{}, err
		}
		return keys.Block{Usage: usage, KEK: SoftwareKEK, KCV: kcv, Wrapped: s.Vault.Seal(clear)}, nil
	}
	kcv, err := keys.KCV(clear)
	if err != nil {
		return keys.Block{}, err
	}
	return keys.Block{Usage: usage, KEK: SoftwareKEK, KCV: fmt.Sprintf("%X", kcv[:3]), Wrapped: s.Vault.Seal(clear)}, nil
}

// NewZoneKey generates a zone PIN key: its block, and the key wrapped under the zone master key.
func (s *Software) NewZoneKey(zmk keys.Block) (keys.Block, []byte, error) {
	if zmk.Usage != "ZMK" || zmk.KEK != SoftwareKEK {
		return keys.Block{}, nil, fmt.Errorf("zone master key: expected a ZMK block of the software module, found a %s block under %s", zmk.Usage, zmk.KEK)
	}
	kek, err := s.Vault.Open(zmk.Wrapped)
	if err != nil {
		return keys.Block{}, nil, fmt.Errorf("zone master key: block does not open")
	}
	k := make([]byte, 16)
	_, _ = rand.Read(k)
	under, err := keys.WrapAES(kek, k)
	if err != nil {
		return keys.Block{}, nil, err
	}
	b, err := s.Import("ZPK", k)
	return b, under, err
}

func (s *Software) SignOn(tmk keys.Block, nmi string) ([]byte, []byte, error) {
	if tmk.KEK != SoftwareKEK {
		return nil, nil, fmt.Errorf("terminal master key: wrapped under KEK %s, not the software module's", tmk.KEK)
	}
	clear, err := s.Vault.Open(tmk.Wrapped)
	if err != nil {
		return nil, nil, fmt.Errorf("terminal master key: block does not open")
	}
	random := func(n int) []byte { b := make([]byte, n); _, _ = rand.Read(b); return b }
	var k keys.WorkingKeys
	switch nmi {
	case "001":
		k = keys.WorkingKeys{TPK: random(8), TAK: random(8)}
	case "003":
		k = keys.WorkingKeys{TPK: random(16), TAK: random(8)}
	case "004":
		k = keys.WorkingKeys{TPK: random(16), TAK: random(8), TDK: random(16)}
	default:
		return nil, nil, fmt.Errorf("sign-on: unknown key layout 60.3 %q", nmi)
	}
	f62, err := keys.KeyBlock(clear, nmi, k)
	if err != nil {
		return nil, nil, err
	}
	plain := append(append(append([]byte{byte(len(k.TPK)), byte(len(k.TAK)), byte(len(k.TDK))}, k.TPK...), k.TAK...), k.TDK...)
	return f62, s.Vault.Seal(plain), nil
}

func (s *Software) OpenKeys(sealed []byte) (WorkingKeys, error) {
	p, err := s.Vault.Open(sealed)
	if err != nil || len(p) < 3 || len(p) != 3+int(p[0])+int(p[1])+int(p[2]) {
		return nil, fmt.Errorf("working keys: sealed value is damaged")
	}
	a, b := 3+int(p[0]), 3+int(p[0])+int(p[1])
	return softKeys{s: s, k: keys.WorkingKeys{TPK: p[3:a], TAK: p[a:b], TDK: p[b:]}}, nil
}

type softKeys struct {
	s *Software
	k keys.WorkingKeys
}

func (k softKeys) MAC(mab []byte) ([8]byte, error) { return keys.MAC(k.k.TAK, mab) }

func (k softKeys) TranslatePIN(block []byte, pan string) ([]byte, int, error) {
	pin, err := keys.ClearPIN(k.k.TPK, block, pan)
	if err != nil {
		return nil, 0, err
	}
	k.s.mu.RLock()
	zk, index := k.s.zone, k.s.index
	k.s.mu.RUnlock()
	b, err := keys.PINBlock(zk, pin, pan)
	return b, index, err
}

func equalHash(a, b []byte) bool { return len(a) > 0 && hmac.Equal(a, b) }
