package journal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Vault holds the journal's secret and what is derived from it: the keyed hash of PANs for
// lookups, the keyed hash of requests for duplicate detection, and AES-GCM for the few values
// that must be kept recoverable (the PAN of a queued reversal, terminals' working keys).
type Vault struct {
	panKey, reqKey []byte
	aead           cipher.AEAD
}

// NewVault derives the vault's keys from a 32-byte secret.
func NewVault(secret []byte) (*Vault, error) {
	if len(secret) != 32 {
		return nil, fmt.Errorf("journal key: expected 32 bytes, found %d", len(secret))
	}
	derive := func(label string) []byte {
		m := hmac.New(sha256.New, secret)
		m.Write([]byte(label))
		return m.Sum(nil)
	}
	block, err := aes.NewCipher(derive("shoudan encryption"))
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Vault{panKey: derive("shoudan pan hash"), reqKey: derive("shoudan request hash"), aead: aead}, nil
}

// LoadOrCreateKey reads a hex key file, creating it (mode 0600) with a random key on first use.
func LoadOrCreateKey(path string) ([]byte, error) {
	if b, err := os.ReadFile(path); err == nil {
		k, err := hex.DecodeString(strings.TrimSpace(string(b)))
		if err != nil || len(k) != 32 {
			return nil, fmt.Errorf("%s: expected 64 hex digits", path)
		}
		return k, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	return k, os.WriteFile(path, []byte(hex.EncodeToString(k)+"\n"), 0o600)
}

func (v *Vault) mac(key []byte, data ...[]byte) []byte {
	m := hmac.New(sha256.New, key)
	for _, d := range data {
		m.Write(d)
	}
	return m.Sum(nil)
}

// hashSize is the stored length of the keyed hashes: 128 bits of HMAC-SHA256 (a prefix, so
// hashes journaled at full length compare by their first 16 bytes; migration 0016 cut them).
const hashSize = 16

// PANHash is the keyed hash of a PAN, for lookups.
func (v *Vault) PANHash(pan string) []byte {
	if pan == "" {
		return nil
	}
	return v.mac(v.panKey, []byte(pan))[:hashSize]
}

// RequestHash is the keyed hash of a request from its MTI on (the TPDU may be rewritten by a
// network controller), to tell a retransmission from a different request with the same key.
func (v *Vault) RequestHash(frame []byte) []byte {
	if len(frame) > 11 {
		frame = frame[11:]
	}
	return v.mac(v.reqKey, frame)[:hashSize]
}

// Seal encrypts plain with a random nonce.
func (v *Vault) Seal(plain []byte) []byte {
	nonce := make([]byte, v.aead.NonceSize())
	_, _ = rand.Read(nonce)
	return v.aead.Seal(nonce, nonce, plain, nil)
}

// Open decrypts what Seal produced.
func (v *Vault) Open(sealed []byte) ([]byte, error) {
	n := v.aead.NonceSize()
	if len(sealed) < n {
		return nil, errors.New("sealed value too short")
	}
	return v.aead.Open(nil, sealed[:n], sealed[n:], nil)
}
