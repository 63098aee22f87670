package keys

import (
	"crypto/aes"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
)

// WrapAES wraps key under the AES key kek with AES key wrap with padding (RFC 5649,
// PKCS#11 CKM_AES_KEY_WRAP_PAD): how a zone PIN key travels under the zone master key in a
// key change. Used by the software module and the simulated issuer; the HSM does the same inside
// the token.
func WrapAES(kek, key []byte) ([]byte, error) {
	b, err := aes.NewCipher(kek)
	if err != nil {
		return nil, fmt.Errorf("zone master key: expected an AES key of 16, 24 or 32 bytes, found %d", len(kek))
	}
	if len(key) == 0 {
		return nil, errors.New("key wrap: expected a key, found nothing")
	}
	var a [8]byte
	binary.BigEndian.PutUint32(a[:4], 0xA65959A6)
	binary.BigEndian.PutUint32(a[4:], uint32(len(key)))
	p := make([]byte, (len(key)+7)/8*8)
	copy(p, key)
	defer zeroBytes(p)
	var buf [16]byte
	if len(p) == 8 {
		copy(buf[:8], a[:])
		copy(buf[8:], p)
		out := make([]byte, 16)
		b.Encrypt(out, buf[:])
		return out, nil
	}
	n := len(p) / 8
	r := append([]byte(nil), p...)
	defer zeroBytes(r)
	for j := 0; j < 6; j++ {
		for i := 0; i < n; i++ {
			copy(buf[:8], a[:])
			copy(buf[8:], r[8*i:8*i+8])
			b.Encrypt(buf[:], buf[:])
			t := uint64(n*j + i + 1)
			binary.BigEndian.PutUint64(a[:], binary.BigEndian.Uint64(buf[:8])^t)
			copy(r[8*i:], buf[8:])
		}
	}
	zeroBytes(buf[:])
	return append(a[:], r...), nil
}

// UnwrapAES undoes WrapAES, checking the integrity value and the padding: a key wrapped under
// another zone master key is refused, never returned as garbage.
func UnwrapAES(kek, wrapped []byte) ([]byte, error) {
	b, err := aes.NewCipher(kek)
	if err != nil {
		return nil, fmt.Errorf("zone master key: expected an AES key of 16, 24 or 32 bytes, found %d", len(kek))
	}
	if len(wrapped) < 16 || len(wrapped)%8 != 0 {
		return nil, fmt.Errorf("key unwrap: expected a multiple of 8 bytes, at least 16, found %d", len(wrapped))
	}
	var a [8]byte
	var buf [16]byte
	var r []byte
	if len(wrapped) == 16 {
		b.Decrypt(buf[:], wrapped)
		copy(a[:], buf[:8])
		r = append([]byte(nil), buf[8:]...)
	} else {
		n := len(wrapped)/8 - 1
		copy(a[:], wrapped[:8])
		r = append([]byte(nil), wrapped[8:]...)
		for j := 5; j >= 0; j-- {
			for i := n - 1; i >= 0; i-- {
				t := uint64(n*j + i + 1)
				binary.BigEndian.PutUint64(buf[:8], binary.BigEndian.Uint64(a[:])^t)
				copy(buf[8:], r[8*i:8*i+8])
				b.Decrypt(buf[:], buf[:])
				copy(a[:], buf[:8])
				copy(r[8*i:], buf[8:])
			}
		}
	}
	zeroBytes(buf[:])
	mli := int(binary.BigEndian.Uint32(a[4:]))
	ok := subtle.ConstantTimeCompare(a[:4], []byte{0xA6, 0x59, 0x59, 0xA6}) == 1 && mli > len(r)-8 && mli <= len(r)
	if ok {
		for _, c := range r[mli:] {
			ok = ok && c == 0
		}
	}
	if !ok {
		zeroBytes(r)
		return nil, errors.New("key unwrap: the integrity check failed (wrapped under another key, or damaged)")
	}
	return r[:mli], nil
}

// KCVAES is an AES key's check value: the first 3 bytes of AES-ECB of a zero block, in hex
// (the legacy method most HSMs print at a ceremony).
func KCVAES(key []byte) (string, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return "", fmt.Errorf("AES key: expected 16, 24 or 32 bytes, found %d", len(key))
	}
	var out [16]byte
	b.Encrypt(out[:], make([]byte, 16))
	return fmt.Sprintf("%X", out[:3]), nil
}

func zeroBytes(b []byte) {
	for i := range b {
		b[i] = 0
	}
}
