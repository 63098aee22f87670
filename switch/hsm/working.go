package hsm

import (
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/miekg/pkcs11"
	"github.com/shoudan/shoudan/spec/keys"
)

// Keys are a terminal's working keys as the token holds them: their blocks under the KEK, and
// (cached in the module) their session objects. No clear key is in this value.
type Keys struct {
	m             *Module
	tpk, tak, tdk []byte // wrapped under the KEK
	tpkLen        int
}

// sealed working keys: "WK1" + for each of TPK, TAK, TDK: clear length (1 byte), wrapped length
// (2 bytes), wrapped key.
const sealedMagic = "WK1"

// SignOn generates fresh working keys for a sign-on layout (60.3 001, 003, 004) and returns the
// field-62 key block (each key under the TMK, then its check value) and the keys sealed for the
// journal (wrapped under the KEK).
func (m *Module) SignOn(tmk keys.Block, nmi string) (f62, sealed []byte, err error) {
	if tmk.KEK != m.kekID {
		return nil, nil, fmt.Errorf("terminal master key: wrapped under KEK %s, this token's KEK is %s", tmk.KEK, m.kekID)
	}
	var lens []int
	switch nmi {
	case "001":
		lens = []int{8, 8}
	case "003":
		lens = []int{16, 8}
	case "004":
		lens = []int{16, 8, 16}
	default:
		return nil, nil, fmt.Errorf("sign-on: unknown key layout 60.3 %q", nmi)
	}
	sealed = []byte(sealedMagic)
	err = m.retry(tmk.Wrapped, pkcs11.CKK_DES2, func(th pkcs11.ObjectHandle) error {
		f62, sealed = nil, []byte(sealedMagic)
		return m.session(func(s pkcs11.SessionHandle) error {
			for i, n := range lens {
				enc, kcv, w, err := m.newWorkingKey(s, th, n)
				if err != nil {
					return err
				}
				f62 = append(f62, enc...)
				if i == 1 && nmi != "001" {
					f62 = append(f62, make([]byte, 8)...) // 003/004: the MAC key is followed by 8 zero bytes
				}
				f62 = append(f62, kcv[:4]...)
				sealed = append(sealed, byte(n))
				sealed = binary.BigEndian.AppendUint16(sealed, uint16(len(w)))
				sealed = append(sealed, w...)
			}
			return nil
		})
	})
	if err != nil {
		return nil, nil, err
	}
	for len(lens) < 3 {
		sealed = append(sealed, 0, 0, 0)
		lens = append(lens, 0)
	}
	return f62, sealed, nil
}

// newWorkingKey draws a key from the token's generator, encrypts it under the TMK, computes its
// check value in the token and wraps it under the KEK. The clear value lives in one buffer
// between the token's calls and is zeroed (SoftHSM cannot encrypt a key object under a DES key).
func (m *Module) newWorkingKey(s pkcs11.SessionHandle, tmk pkcs11.ObjectHandle, n int) (enc, kcv, wrapped []byte, err error) {
	v, err := m.ctx.GenerateRandom(s, n)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("hsm: C_GenerateRandom: %w", err)
	}
	defer zero(v)
	oddParity(v)
	if enc, err = m.encrypt(s, tmk, pkcs11.CKM_DES3_ECB, nil, v); err != nil {
		return nil, nil, nil, fmt.Errorf("hsm: encrypting a working key under the TMK: %w", err)
	}
	d := des2(v)
	defer zero(d)
	h, err := m.ctx.CreateObject(s, append(template(pkcs11.CKK_DES2, false, true, pkcs11.CKA_ENCRYPT), pkcs11.NewAttribute(pkcs11.CKA_VALUE, d)))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("hsm: working key: %w", err)
	}
	defer m.ctx.DestroyObject(s, h)
	if kcv, err = m.encrypt(s, h, pkcs11.CKM_DES3_ECB, nil, make([]byte, 8)); err != nil {
		return nil, nil, nil, err
	}
	if wrapped, err = m.ctx.WrapKey(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_WRAP_PAD, nil)}, m.kek, h); err != nil {
		return nil, nil, nil, fmt.Errorf("hsm: wrapping a working key: %w", err)
	}
	return enc, kcv, wrapped, nil
}

// oddParity sets each byte's low bit so that the byte has odd parity (DES key convention;
// terminals may check it).
func oddParity(k []byte) {
	for i, b := range k {
		b &^= 1
		p := b ^ b>>4
		p ^= p >> 2
		p ^= p >> 1
		if p&1 == 0 {
			b |= 1
		}
		k[i] = b
	}
}

// OpenKeys reads working keys sealed at sign-on. Their objects are unwrapped on first use and
// kept, so a purchase costs only its operations.
func (m *Module) OpenKeys(sealed []byte) (*Keys, error) {
	bad := errors.New("working keys: sealed value is damaged")
	if len(sealed) < 3 || string(sealed[:3]) != sealedMagic {
		return nil, bad
	}
	k := &Keys{m: m}
	p := sealed[3:]
	for i := 0; i < 3; i++ {
		if len(p) < 3 {
			return nil, bad
		}
		n, wl := int(p[0]), int(binary.BigEndian.Uint16(p[1:3]))
		p = p[3:]
		if len(p) < wl {
			return nil, bad
		}
		w := p[:wl]
		p = p[wl:]
		switch i {
		case 0:
			k.tpk, k.tpkLen = w, n
		case 1:
			k.tak = w
		case 2:
			k.tdk = w
		}
	}
	if len(k.tpk) == 0 || len(k.tak) == 0 {
		return nil, bad
	}
	return k, nil
}

// MAC computes the CUP "ECB" MAC of protocol.md §6 under the TAK in the token: the XOR of the
// MAB's blocks and its hex are public; the two DES steps are one CBC encryption of the 16 hex
// bytes with a zero IV (E1 = E(H1), E2 = E(E1 ⊕ H2)).
func (k *Keys) MAC(mab []byte) ([8]byte, error) {
	var out [8]byte
	var r [8]byte
	for i := 0; i < len(mab); i += 8 {
		end := min(i+8, len(mab))
		subtle.XORBytes(r[:end-i], r[:end-i], mab[i:end])
	}
	h := []byte(strings.ToUpper(hex.EncodeToString(r[:])))
	var e2 []byte
	err := k.m.retry(k.tak, pkcs11.CKK_DES2, func(th pkcs11.ObjectHandle) error {
		return k.m.stream(th, false, func(upd func([]byte) ([]byte, error)) error {
			e1, err := upd(h[:8])
			if err != nil {
				return err
			}
			if len(e1) != 8 {
				return fmt.Errorf("expected 8 bytes from the token, found %d", len(e1))
			}
			subtle.XORBytes(e1, e1, h[8:16])
			e2, err = upd(e1)
			return err
		})
	})
	if err == nil && len(e2) != 8 {
		err = fmt.Errorf("expected 8 bytes from the token, found %d", len(e2))
	}
	if err != nil {
		return out, fmt.Errorf("hsm: MAC: %w", err)
	}
	copy(out[:], strings.ToUpper(hex.EncodeToString(e2[:4])))
	return out, nil
}

// TranslatePIN re-encrypts a format-0 PIN block from the terminal's PIN key to the zone PIN key.
// The block is checked for format 0 against the PAN; the clear block is zeroed between the two
// token calls (see the package comment).
func (k *Keys) TranslatePIN(block []byte, pan string) ([]byte, int, error) {
	if len(block) != 8 {
		return nil, 0, fmt.Errorf("PIN block: expected 8 bytes, found %d", len(block))
	}
	k.m.mu.Lock()
	zpk, index := k.m.zpk, k.m.zpkIndex
	k.m.mu.Unlock()
	if zpk == 0 {
		return nil, 0, errors.New("hsm: no zone PIN key is set")
	}
	var out []byte
	err := k.m.retry(k.tpk, pkcs11.CKK_DES2, func(th pkcs11.ObjectHandle) error {
		return k.m.stream(th, true, func(dec func([]byte) ([]byte, error)) error {
			p, err := dec(block)
			if err != nil {
				return err
			}
			defer zero(p)
			if len(p) != 8 {
				return fmt.Errorf("hsm: expected 8 bytes from the token, found %d", len(p))
			}
			if err := checkFormat0(p, pan); err != nil {
				return err
			}
			return k.m.stream(zpk, false, func(enc func([]byte) ([]byte, error)) (err error) {
				out, err = enc(p)
				return err
			})
		})
	})
	return out, index, err
}

// checkFormat0 checks a clear ISO 9564 format-0 block against the PAN without forming the PIN.
func checkFormat0(p []byte, pan string) error {
	if len(pan) < 13 {
		return fmt.Errorf("PIN block: expected a PAN of at least 13 digits, found %d", len(pan))
	}
	var a [8]byte
	d := "0000" + pan[len(pan)-13:len(pan)-1]
	if _, err := hex.Decode(a[:], []byte(d)); err != nil {
		return errors.New("PIN block: the PAN is not numeric")
	}
	ok := true
	n := int(p[0] ^ a[0])
	if (p[0]^a[0])>>4 != 0 || n < 4 || n > 12 {
		ok = false
	}
	for i := 0; ok && i < 14; i++ { // nibbles 2..15: n PIN digits, then F fill
		byt := p[1+i/2] ^ a[1+i/2]
		nib := byt >> 4
		if i%2 == 1 {
			nib = byt & 0x0F
		}
		if (i < n && nib > 9) || (i >= n && nib != 0x0F) {
			ok = false
		}
	}
	zero(a[:])
	if !ok {
		return errors.New("PIN block: not a valid format-0 block for this PAN")
	}
	return nil
}
