package hsm

import (
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/miekg/pkcs11"
	"github.com/shoudan/shoudan/spec/keys"
)

// The zone master key (ZMK) is an AES key shared with the issuer by a ceremony at both ends; a
// key change sends a new zone PIN key wrapped under it (AES key wrap with padding, RFC 5649,
// which SoftHSM does inside the token: it has no DES key wrap). Its check value is AES-ECB of a
// zero block, first 3 bytes.

func aesTemplate(extractable bool, usage ...uint) []*pkcs11.Attribute {
	return template(pkcs11.CKK_AES, false, extractable, usage...)
}

// importAES wraps a clear AES key (the ZMK's combined components) under the KEK.
func (m *Module) importAES(usage string, clear []byte) (keys.Block, error) {
	if len(clear) != 16 && len(clear) != 32 {
		return keys.Block{}, fmt.Errorf("%s: expected an AES key of 16 or 32 bytes, found %d", usage, len(clear))
	}
	return m.importValue(usage, pkcs11.CKK_AES, pkcs11.CKM_AES_ECB, clear, 16)
}

// aesKCV is the check value of an AES key component, computed in the token.
func (m *Module) aesKCV(c []byte) (string, error) {
	if len(c) != 16 && len(c) != 32 {
		return "", fmt.Errorf("component: expected an AES key of 16 or 32 bytes, found %d", len(c))
	}
	return m.componentKCV(pkcs11.CKK_AES, pkcs11.CKM_AES_ECB, c, 16)
}

// NewZoneKey generates a zone PIN key inside the token and returns it twice, never in clear: as
// a block under the KEK (the switch's own copy) and wrapped under the zone master key zmk (what a
// key change sends the issuer).
func (m *Module) NewZoneKey(zmk keys.Block) (zpk keys.Block, underZMK []byte, err error) {
	if zmk.Usage != "ZMK" || zmk.KEK != m.kekID {
		return keys.Block{}, nil, fmt.Errorf("zone master key: expected a ZMK block under this token's KEK %s, found a %s block under %s", m.kekID, zmk.Usage, zmk.KEK)
	}
	err = m.session(func(s pkcs11.SessionHandle) error {
		kw := []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_WRAP_PAD, nil)}
		zh, err := m.ctx.UnwrapKey(s, kw, m.kek, zmk.Wrapped, aesTemplate(false, pkcs11.CKA_WRAP, pkcs11.CKA_ENCRYPT))
		if err != nil {
			return fmt.Errorf("zone master key: the block does not unwrap under KEK %s (%v)", m.kekID, err)
		}
		defer m.ctx.DestroyObject(s, zh)
		if kcv, err := m.encrypt(s, zh, pkcs11.CKM_AES_ECB, nil, make([]byte, 16)); err != nil || !strings.EqualFold(hex.EncodeToString(kcv[:3]), zmk.KCV) {
			return fmt.Errorf("zone master key: the block's check value %s does not match its key", zmk.KCV)
		}
		kh, err := m.ctx.GenerateKey(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_DES2_KEY_GEN, nil)}, template(pkcs11.CKK_DES2, false, true, pkcs11.CKA_ENCRYPT))
		if err != nil {
			return fmt.Errorf("hsm: generating the zone PIN key: %w", err)
		}
		defer m.ctx.DestroyObject(s, kh)
		kcv, err := m.encrypt(s, kh, pkcs11.CKM_DES3_ECB, nil, make([]byte, 8))
		if err != nil {
			return fmt.Errorf("hsm: zone PIN key check value: %w", err)
		}
		if underZMK, err = m.ctx.WrapKey(s, kw, zh, kh); err != nil {
			return fmt.Errorf("hsm: wrapping the zone PIN key under the zone master key: %w", err)
		}
		w, err := m.ctx.WrapKey(s, kw, m.kek, kh)
		if err != nil {
			return fmt.Errorf("hsm: wrapping the zone PIN key under the KEK: %w", err)
		}
		zpk = keys.Block{Usage: "ZPK", KEK: m.kekID, KCV: strings.ToUpper(hex.EncodeToString(kcv[:3])), Wrapped: w}
		return nil
	})
	return zpk, underZMK, err
}
