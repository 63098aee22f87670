package posswitch

import (
	"crypto/hmac"
	"crypto/rand"
	"fmt"

	"github.com/shoudan/shoudan/spec/keys"
	"github.com/shoudan/shoudan/switch/journal"
)

// SecurityModule is everything that touches clear keys or PINs. Software is the implementation
// for now; a real HSM replaces it behind this interface.
type SecurityModule interface {
	// NewWorkingKeys generates working keys for a sign-on layout (60.3 001, 003, 004).
	NewWorkingKeys(nmi string) (keys.WorkingKeys, error)
	// SealKeys / OpenKeys protect working keys at rest.
	SealKeys(k keys.WorkingKeys) []byte
	OpenKeys(sealed []byte) (keys.WorkingKeys, error)
	// TranslatePIN re-encrypts a format-0 PIN block from the terminal PIN key to the zone key.
	TranslatePIN(tpk, block []byte, pan string) ([]byte, error)
}

// Software is a software security module: keys sealed under the journal vault, PINs translated in
// memory and never kept.
type Software struct {
	Vault   *journal.Vault
	ZoneKey []byte
}

func (s *Software) NewWorkingKeys(nmi string) (keys.WorkingKeys, error) {
	random := func(n int) []byte { b := make([]byte, n); _, _ = rand.Read(b); return b }
	switch nmi {
	case "001":
		return keys.WorkingKeys{TPK: random(8), TAK: random(8)}, nil
	case "003":
		return keys.WorkingKeys{TPK: random(16), TAK: random(8)}, nil
	case "004":
		return keys.WorkingKeys{TPK: random(16), TAK: random(8), TDK: random(16)}, nil
	}
	return keys.WorkingKeys{}, fmt.Errorf("sign-on: unknown key layout 60.3 %q", nmi)
}

func (s *Software) SealKeys(k keys.WorkingKeys) []byte {
	plain := append(append(append([]byte{byte(len(k.TPK)), byte(len(k.TAK)), byte(len(k.TDK))}, k.TPK...), k.TAK...), k.TDK...)
	return s.Vault.Seal(plain)
}

func (s *Software) OpenKeys(sealed []byte) (keys.WorkingKeys, error) {
	p, err := s.Vault.Open(sealed)
	if err != nil || len(p) < 3 || len(p) != 3+int(p[0])+int(p[1])+int(p[2]) {
		return keys.WorkingKeys{}, fmt.Errorf("working keys: sealed value is damaged")
	}
	a, b := 3+int(p[0]), 3+int(p[0])+int(p[1])
	return keys.WorkingKeys{TPK: p[3:a], TAK: p[a:b], TDK: p[b:]}, nil
}

func (s *Software) TranslatePIN(tpk, block []byte, pan string) ([]byte, error) {
	pin, err := keys.ClearPIN(tpk, block, pan)
	if err != nil {
		return nil, err
	}
	return keys.PINBlock(s.ZoneKey, pin, pan)
}

func equalHash(a, b []byte) bool { return len(a) > 0 && hmac.Equal(a, b) }
