// Package keys holds the terminal security layouts of protocol.md §6 as pure functions: DES and
// 3DES-EDE in ECB, key check values, the CUP "ECB" MAC, ISO 9564 format-0 PIN blocks and the
// sign-on key block of field 62.
package keys

import (
	"crypto/cipher"
	"crypto/des"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
)

// schedules keeps the key schedules of recently used keys: building a 3DES cipher (three key
// schedules) cost about 6 % of the switch's CPU, six times per purchase (MAC in, F59 check
// value, PIN translation, MAC out, and the issuer's PIN check). It holds nothing a key in memory
// does not already give, is bounded, and is emptied when full.
var schedules struct {
	sync.Mutex
	m map[string]cipher.Block
}

const maxSchedules = 16384

// block returns a DES cipher for an 8-byte key or 3DES-EDE for a 16-byte (K1 K2 K1) or 24-byte key.
func block(key []byte) (cipher.Block, error) {
	schedules.Lock()
	b, ok := schedules.m[string(key)]
	schedules.Unlock()
	if ok {
		return b, nil
	}
	b, err := newBlock(key)
	if err != nil {
		return nil, err
	}
	schedules.Lock()
	if schedules.m == nil || len(schedules.m) >= maxSchedules {
		schedules.m = make(map[string]cipher.Block)
	}
	schedules.m[string(key)] = b
	schedules.Unlock()
	return b, nil
}

func newBlock(key []byte) (cipher.Block, error) {
	switch len(key) {
	case 8:
		return des.NewCipher(key)
	case 16:
		k := make([]byte, 24)
		copy(k, key)
		copy(k[16:], key[:8])
		return des.NewTripleDESCipher(k)
	case 24:
		return des.NewTripleDESCipher(key)
	}
	return nil, fmt.Errorf("key: expected 8, 16 or 24 bytes, found %d", len(key))
}

// EncryptECB encrypts data (a multiple of 8 bytes) under key.
func EncryptECB(key, data []byte) ([]byte, error) { return ecb(key, data, true) }

// DecryptECB decrypts data (a multiple of 8 bytes) under key.
func DecryptECB(key, data []byte) ([]byte, error) { return ecb(key, data, false) }

func ecb(key, data []byte, enc bool) ([]byte, error) {
	b, err := block(key)
	if err != nil {
		return nil, err
	}
	if len(data)%8 != 0 {
		return nil, fmt.Errorf("ECB data: expected a multiple of 8 bytes, found %d", len(data))
	}
	out := make([]byte, len(data))
	for i := 0; i < len(data); i += 8 {
		if enc {
			b.Encrypt(out[i:i+8], data[i:i+8])
		} else {
			b.Decrypt(out[i:i+8], data[i:i+8])
		}
	}
	return out, nil
}

// KCV is a key's check value: the first 4 bytes of the key encrypting 8 zero bytes.
func KCV(key []byte) ([]byte, error) {
	e, err := EncryptECB(key, make([]byte, 8))
	if err != nil {
		return nil, err
	}
	return e[:4], nil
}

// MAC computes the CUP POS "ECB" MAC of protocol.md §6 over mab under the MAC key tak: XOR the
// 8-byte blocks of the zero-padded MAB, take the uppercase hex of the result, E1 = E(H[0:8]),
// E2 = E(E1 XOR H[8:16]); the MAC is the first 8 characters of uppercase hex(E2).
func MAC(tak, mab []byte) ([8]byte, error) {
	var out [8]byte
	b, err := block(tak)
	if err != nil {
		return out, err
	}
	var r [8]byte
	for i := 0; i < len(mab); i += 8 {
		end := min(i+8, len(mab))
		subtle.XORBytes(r[:end-i], r[:end-i], mab[i:end])
	}
	h := []byte(strings.ToUpper(hex.EncodeToString(r[:])))
	var e1, e2 [8]byte
	b.Encrypt(e1[:], h[:8])
	subtle.XORBytes(e1[:], e1[:], h[8:16])
	b.Encrypt(e2[:], e1[:])
	copy(out[:], strings.ToUpper(hex.EncodeToString(e2[:4])))
	return out, nil
}

// VerifyMAC reports whether mac is the MAC of mab under tak, in constant time.
func VerifyMAC(tak, mab, mac []byte) (bool, error) {
	want, err := MAC(tak, mab)
	if err != nil {
		return false, err
	}
	return subtle.ConstantTimeCompare(want[:], mac) == 1, nil
}

// pinPANBlock is the PAN half of a format-0 PIN block: 0000 + the 12 rightmost digits of the
// PAN excluding the check digit.
func pinPANBlock(pan string) ([]byte, error) {
	if len(pan) < 13 {
		return nil, fmt.Errorf("PIN block: expected a PAN of at least 13 digits, found %d", len(pan))
	}
	d := "0000" + pan[len(pan)-13:len(pan)-1]
	return hex.DecodeString(d)
}

// PINBlock builds an ISO 9564 format-0 PIN block for pin and pan, encrypted under key.
func PINBlock(key []byte, pin, pan string) ([]byte, error) {
	if len(pin) < 4 || len(pin) > 12 || strings.Trim(pin, "0123456789") != "" {
		return nil, fmt.Errorf("PIN: expected 4 to 12 digits, found %d characters", len(pin))
	}
	p, err := hex.DecodeString(fmt.Sprintf("0%X%s%s", len(pin), pin, strings.Repeat("F", 14-len(pin))))
	if err != nil {
		return nil, err
	}
	a, err := pinPANBlock(pan)
	if err != nil {
		return nil, err
	}
	subtle.XORBytes(p, p, a)
	return EncryptECB(key, p)
}

// ClearPIN decrypts a format-0 PIN block and returns the PIN. Only a security module calls it.
func ClearPIN(key, block []byte, pan string) (string, error) {
	c, err := DecryptECB(key, block)
	if err != nil {
		return "", err
	}
	a, err := pinPANBlock(pan)
	if err != nil {
		return "", err
	}
	subtle.XORBytes(c, c, a)
	h := strings.ToUpper(hex.EncodeToString(c))
	if h[0] != '0' {
		return "", fmt.Errorf("PIN block: expected format 0, found format %c", h[0])
	}
	n := int(c[0] & 0x0F)
	if n < 4 || n > 12 || strings.Trim(h[2:2+n], "0123456789") != "" || strings.Trim(h[2+n:], "F") != "" {
		return "", fmt.Errorf("PIN block: not a valid format-0 block for this PAN")
	}
	return h[2 : 2+n], nil
}

// WorkingKeys are the keys a sign-on issues, in clear (only inside the security module).
type WorkingKeys struct {
	TPK []byte // 8 bytes (60.3 001) or 16 bytes (003, 004)
	TAK []byte // always 8 bytes: the MAC key is single-length DES in every layout
	TDK []byte // 16 bytes, 004 only
}

// KeyBlock encrypts the working keys under the TMK in the field-62 layout of nmi.
func KeyBlock(tmk []byte, nmi string, k WorkingKeys) ([]byte, error) {
	var out []byte
	add := func(key []byte, pad int) error {
		enc, err := EncryptECB(tmk, key)
		if err != nil {
			return err
		}
		kcv, err := KCV(key)
		if err != nil {
			return err
		}
		out = append(out, enc...)
		out = append(out, make([]byte, pad)...)
		out = append(out, kcv...)
		return nil
	}
	var err error
	switch nmi {
	case "001":
		if len(k.TPK) != 8 || len(k.TAK) != 8 {
			return nil, fmt.Errorf("key block 001: expected 8-byte TPK and TAK")
		}
		if err = add(k.TPK, 0); err == nil {
			err = add(k.TAK, 0)
		}
	case "003", "004":
		if len(k.TPK) != 16 || len(k.TAK) != 8 || (nmi == "004" && len(k.TDK) != 16) {
			return nil, fmt.Errorf("key block %s: expected 16-byte TPK, 8-byte TAK and 16-byte TDK for 004", nmi)
		}
		if err = add(k.TPK, 0); err == nil {
			err = add(k.TAK, 8)
		}
		if err == nil && nmi == "004" {
			err = add(k.TDK, 0)
		}
	default:
		return nil, fmt.Errorf("key block: expected 60.3 001, 003 or 004, found %q", nmi)
	}
	return out, err
}

// ParseKeyBlock decrypts a field-62 key block with the TMK and checks every check value: what a
// terminal does after sign-on.
func ParseKeyBlock(tmk []byte, nmi string, b []byte) (WorkingKeys, error) {
	type part struct {
		dst       *[]byte
		off, n, c int // offset, key length, offset of the KCV
	}
	var k WorkingKeys
	var parts []part
	switch {
	case nmi == "001" && len(b) == 24:
		parts = []part{{&k.TPK, 0, 8, 8}, {&k.TAK, 12, 8, 20}}
	case nmi == "003" && len(b) == 40:
		parts = []part{{&k.TPK, 0, 16, 16}, {&k.TAK, 20, 8, 36}}
	case nmi == "004" && len(b) == 60:
		parts = []part{{&k.TPK, 0, 16, 16}, {&k.TAK, 20, 8, 36}, {&k.TDK, 40, 16, 56}}
	default:
		return k, fmt.Errorf("key block: expected 24, 40 or 60 bytes for 60.3 %s, found %d", nmi, len(b))
	}
	for _, p := range parts {
		clear, err := DecryptECB(tmk, b[p.off:p.off+p.n])
		if err != nil {
			return k, err
		}
		kcv, _ := KCV(clear)
		if subtle.ConstantTimeCompare(kcv, b[p.c:p.c+4]) != 1 {
			return k, fmt.Errorf("key block: check value at offset %d does not match its key", p.c)
		}
		*p.dst = clear
	}
	return k, nil
}

// Block is a key wrapped under a security module's key-encryption key, as config files and the
// journal carry it: never the clear key. Its text form is
//
//	KB1.<usage>.<kek id>.<kcv>.<wrapped, hex>
//
// usage names what the key may be used for (TMK, ZPK), the KEK id names the key-encryption key
// it is wrapped under (so a block from another installation is refused by name, not by a failed
// unwrap), kcv is the clear key's check value (6 hex digits, for the record and for ceremonies).
type Block struct {
	Usage   string
	KEK     string
	KCV     string
	Wrapped []byte
}

// String is the block's text form.
func (b Block) String() string {
	return "KB1." + b.Usage + "." + b.KEK + "." + b.KCV + "." + strings.ToUpper(hex.EncodeToString(b.Wrapped))
}

// ParseBlock reads a block's text form for usage.
func ParseBlock(s, usage string) (Block, error) {
	parts := strings.Split(strings.TrimSpace(s), ".")
	if len(parts) != 5 || parts[0] != "KB1" {
		if _, err := hex.DecodeString(s); err == nil && (len(s) == 16 || len(s) == 32 || len(s) == 48) {
			return Block{}, fmt.Errorf("expected a key block wrapped under the security module (KB1.%s.…), found a clear key: keys are never kept in clear; enter it with `shoudan keys import-%s`", usage, strings.ToLower(usage))
		}
		return Block{}, fmt.Errorf("expected a key block KB1.%s.<kek id>.<kcv>.<hex>", usage)
	}
	if parts[1] != usage {
		return Block{}, fmt.Errorf("expected a %s key block, found one for %s", usage, parts[1])
	}
	w, err := hex.DecodeString(parts[4])
	if err != nil || len(w) == 0 || len(parts[3]) != 6 || parts[2] == "" {
		return Block{}, fmt.Errorf("key block: expected KB1.%s.<kek id>.<6-hex kcv>.<hex>", usage)
	}
	return Block{Usage: parts[1], KEK: parts[2], KCV: parts[3], Wrapped: w}, nil
}
