// Package hsm is the switch's security module on a PKCS#11 token: SoftHSM2 under the data
// directory by default, any PKCS#11 HSM when configured. Inside the token live the
// key-encryption key (an AES-256 key that never leaves it), and, as non-extractable session
// objects unwrapped from their blocks, the terminal master keys, the zone PIN key and the working
// keys of signed-on terminals. Outside the token a key exists only as a block wrapped under the
// KEK (AES key wrap with padding, RFC 5649, which also authenticates it).
//
// The switch talks to the token through github.com/miekg/pkcs11 directly rather than crypto11:
// crypto11 hides sessions and object handles and offers neither key wrap/unwrap under a chosen
// key nor DES3-ECB/CBC on a handle, which are the whole of what this package does.
//
// What SoftHSM 2.6.1 cannot do inside the token, and how this package does it instead (see
// docs/security.md): it has no DES key wrap (C_WrapKey takes AES and RSA only) and no DES unwrap,
// so a working key cannot be encrypted under a DES TMK without its value passing through the
// caller, and it has no PIN-translation mechanism, so a PIN block is decrypted under the TPK and
// re-encrypted under the ZPK in two calls on one session. Both clear values live in one buffer for
// the microseconds between two calls, are zeroed at once, and are never logged, stored or copied.
// A payment HSM's translate command replaces those two calls behind the same methods.
package hsm

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/miekg/pkcs11"
	"github.com/shoudan/shoudan/spec/keys"
)

// Config selects the token.
type Config struct {
	Module string // path of the PKCS#11 library
	Token  string // token label
	PIN    string // user PIN
	// Sessions is the number of sessions kept open for concurrent operations (default 8).
	Sessions int
}

// KEKLabel is the label of the key-encryption key object on the token.
const KEKLabel = "shoudan-kek"

// Module is an open token.
type Module struct {
	ctx      *pkcs11.Ctx
	slot     uint
	owner    pkcs11.SessionHandle // holds the session objects; never used for operations
	ownerMu  sync.Mutex
	sessions chan pkcs11.SessionHandle
	kek      pkcs11.ObjectHandle
	kekID    string

	mu       sync.Mutex
	cache    map[string]*cached // wrapped block → its session object
	ops      map[pkcs11.ObjectHandle]*keyOp
	zpk      pkcs11.ObjectHandle
	zpkOld   pkcs11.ObjectHandle
	zpkIndex int
	calls    callCounter
}

type cached struct {
	h    pkcs11.ObjectHandle
	used uint64
}

// maxCached bounds the session objects kept (a signed-on terminal holds two or three).
const maxCached = 60000

var libs struct {
	sync.Mutex
	m map[string]*pkcs11.Ctx
}

// library loads and initialises a PKCS#11 library once per process (C_Initialize may be called
// only once).
func library(path string) (*pkcs11.Ctx, error) {
	libs.Lock()
	defer libs.Unlock()
	if c := libs.m[path]; c != nil {
		return c, nil
	}
	c := pkcs11.New(path)
	if c == nil {
		return nil, fmt.Errorf("PKCS#11 module %s: cannot be loaded (expected a PKCS#11 shared library; SoftHSM2 is /usr/lib/softhsm/libsofthsm2.so, Debian package softhsm2)", path)
	}
	if err := c.Initialize(); err != nil && !errors.Is(err, pkcs11.Error(pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED)) {
		return nil, fmt.Errorf("PKCS#11 module %s: C_Initialize: %w", path, err)
	}
	if libs.m == nil {
		libs.m = map[string]*pkcs11.Ctx{}
	}
	libs.m[path] = c
	return c, nil
}

// findSlot returns the slot of the initialised token labelled label.
func findSlot(c *pkcs11.Ctx, label string) (uint, bool, error) {
	slots, err := c.GetSlotList(true)
	if err != nil {
		return 0, false, fmt.Errorf("C_GetSlotList: %w", err)
	}
	for _, s := range slots {
		ti, err := c.GetTokenInfo(s)
		if err == nil && strings.TrimRight(ti.Label, " \x00") == label && ti.Flags&pkcs11.CKF_TOKEN_INITIALIZED != 0 {
			return s, true, nil
		}
	}
	return 0, false, nil
}

// Open logs in to the token and finds (or, on a fresh token, creates) the KEK.
func Open(cfg Config) (*Module, error) {
	if cfg.Module == "" || cfg.Token == "" {
		return nil, errors.New("hsm: expected a PKCS#11 module path and a token label")
	}
	c, err := library(cfg.Module)
	if err != nil {
		return nil, err
	}
	slot, ok, err := findSlot(c, cfg.Token)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("hsm: no initialised token labelled %q in %s", cfg.Token, cfg.Module)
	}
	m := &Module{ctx: c, slot: slot, cache: map[string]*cached{}, ops: map[pkcs11.ObjectHandle]*keyOp{}}
	if m.owner, err = c.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION); err != nil {
		return nil, fmt.Errorf("hsm: C_OpenSession: %w", err)
	}
	if err := c.Login(m.owner, pkcs11.CKU_USER, cfg.PIN); err != nil && !errors.Is(err, pkcs11.Error(pkcs11.CKR_USER_ALREADY_LOGGED_IN)) {
		c.CloseSession(m.owner)
		return nil, fmt.Errorf("hsm: login to token %q refused (%v): check the PIN", cfg.Token, err)
	}
	n := cfg.Sessions
	if n <= 0 {
		n = 8
	}
	m.sessions = make(chan pkcs11.SessionHandle, n)
	for i := 0; i < n; i++ {
		s, err := c.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
		if err != nil {
			m.Close()
			return nil, fmt.Errorf("hsm: C_OpenSession: %w", err)
		}
		m.sessions <- s
	}
	if err := m.findKEK(); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

// Close ends the sessions (the session objects go with them).
func (m *Module) Close() {
	m.mu.Lock()
	for h, op := range m.ops {
		op.close(m)
		delete(m.ops, h)
	}
	m.mu.Unlock()
	if m.sessions != nil {
		for len(m.sessions) > 0 {
			m.ctx.CloseSession(<-m.sessions)
		}
	}
	m.ctx.CloseSession(m.owner)
}

func (m *Module) findKEK() error {
	s := m.owner
	m.ownerMu.Lock()
	defer m.ownerMu.Unlock()
	if err := m.ctx.FindObjectsInit(s, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LABEL, KEKLabel), pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY)}); err != nil {
		return fmt.Errorf("hsm: C_FindObjectsInit: %w", err)
	}
	found, _, err := m.ctx.FindObjects(s, 2)
	_ = m.ctx.FindObjectsFinal(s)
	if err != nil {
		return fmt.Errorf("hsm: C_FindObjects: %w", err)
	}
	if len(found) == 0 {
		id := make([]byte, 4)
		_, _ = rand.Read(id)
		h, err := m.ctx.GenerateKey(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)}, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY), pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
			pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, 32), pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true), pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, KEKLabel), pkcs11.NewAttribute(pkcs11.CKA_ID, id),
			pkcs11.NewAttribute(pkcs11.CKA_WRAP, true), pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, true),
			pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, false), pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, false),
			pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true), pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false)})
		if err != nil {
			return fmt.Errorf("hsm: generating the key-encryption key: %w", err)
		}
		found = []pkcs11.ObjectHandle{h}
	}
	if len(found) > 1 {
		return fmt.Errorf("hsm: more than one %s object on the token: remove the extra one", KEKLabel)
	}
	attrs, err := m.ctx.GetAttributeValue(s, found[0], []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_ID, nil)})
	if err != nil || len(attrs) == 0 || len(attrs[0].Value) == 0 {
		return fmt.Errorf("hsm: the key-encryption key has no CKA_ID")
	}
	m.kek, m.kekID = found[0], strings.ToUpper(hex.EncodeToString(attrs[0].Value))
	return nil
}

// KEKID names the key-encryption key (the id carried by every block it wraps).
func (m *Module) KEKID() string { return m.kekID }

// session runs f on a session of the pool.
func (m *Module) session(f func(s pkcs11.SessionHandle) error) error {
	s := <-m.sessions
	defer func() { m.sessions <- s }()
	return f(s)
}

var (
	tru = true
	fal = false
)

// template is the attribute set of a DES key object: always sensitive, a session object.
func template(keyType uint, token, extractable bool, usage ...uint) []*pkcs11.Attribute {
	t := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY), pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, keyType),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, token), pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, token),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true), pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, extractable),
	}
	for _, u := range []uint{pkcs11.CKA_ENCRYPT, pkcs11.CKA_DECRYPT, pkcs11.CKA_WRAP, pkcs11.CKA_UNWRAP, pkcs11.CKA_DERIVE, pkcs11.CKA_SIGN, pkcs11.CKA_VERIFY} {
		on := false
		for _, x := range usage {
			on = on || x == u
		}
		t = append(t, pkcs11.NewAttribute(u, on))
	}
	return t
}

// des2 is the value of a DES key as a double-length key: a single-length key K becomes K‖K,
// which 3DES-EDE turns into single DES (SoftHSM with OpenSSL 3 has no single-DES mechanism).
func des2(k []byte) []byte {
	if len(k) == 8 {
		return append(append(make([]byte, 0, 16), k...), k...)
	}
	return append([]byte(nil), k...)
}

// Import wraps a clear key (a ceremony's combined components) under the KEK and returns its
// block. clear is zeroed.
func (m *Module) Import(usage string, clear []byte) (keys.Block, error) {
	defer zero(clear)
	if usage == "ZMK" {
		return m.importAES(usage, clear)
	}
	if len(clear) != 8 && len(clear) != 16 && len(clear) != 24 {
		return keys.Block{}, fmt.Errorf("key: expected 8, 16 or 24 bytes, found %d", len(clear))
	}
	v := des2(clear)
	defer zero(v)
	kt := uint(pkcs11.CKK_DES2)
	if len(v) == 24 {
		kt = pkcs11.CKK_DES3
	}
	return m.importValue(usage, kt, pkcs11.CKM_DES3_ECB, v, 8)
}

// importValue makes a clear value of key type kt a throw-away extractable session object, takes
// its check value (a zero block of n bytes under mech) and wraps it under the KEK as a block.
func (m *Module) importValue(usage string, kt, mech uint, v []byte, n int) (keys.Block, error) {
	var b keys.Block
	err := m.session(func(s pkcs11.SessionHandle) error {
		h, err := m.ctx.CreateObject(s, append(template(kt, false, true, pkcs11.CKA_ENCRYPT), pkcs11.NewAttribute(pkcs11.CKA_VALUE, v)))
		if err != nil {
			return fmt.Errorf("hsm: importing the key: %w", err)
		}
		defer m.ctx.DestroyObject(s, h)
		kcv, err := m.encrypt(s, h, mech, nil, make([]byte, n))
		if err != nil {
			return fmt.Errorf("hsm: check value: %w", err)
		}
		w, err := m.ctx.WrapKey(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_WRAP_PAD, nil)}, m.kek, h)
		if err != nil {
			return fmt.Errorf("hsm: wrapping the key under the KEK: %w", err)
		}
		b = keys.Block{Usage: usage, KEK: m.kekID, KCV: strings.ToUpper(hex.EncodeToString(kcv[:3])), Wrapped: w}
		return nil
	})
	return b, err
}

// ComponentKCV is the check value of a key component (6 hex digits), computed in the token.
func (m *Module) ComponentKCV(usage string, c []byte) (string, error) {
	if usage == "ZMK" {
		return m.aesKCV(c)
	}
	v := des2(c)
	defer zero(v)
	if len(v) != 16 && len(v) != 24 {
		return "", fmt.Errorf("component: expected 8, 16 or 24 bytes, found %d", len(c))
	}
	kt := uint(pkcs11.CKK_DES2)
	if len(v) == 24 {
		kt = pkcs11.CKK_DES3
	}
	return m.componentKCV(kt, pkcs11.CKM_DES3_ECB, v, 8)
}

// componentKCV is the check value of a clear value of key type kt (a ceremony's component or
// combined key): a throw-away session object encrypts a zero block of n bytes under mech.
func (m *Module) componentKCV(kt, mech uint, v []byte, n int) (string, error) {
	var out string
	err := m.session(func(s pkcs11.SessionHandle) error {
		h, err := m.ctx.CreateObject(s, append(template(kt, false, false, pkcs11.CKA_ENCRYPT), pkcs11.NewAttribute(pkcs11.CKA_VALUE, v)))
		if err != nil {
			return fmt.Errorf("hsm: component: %w", err)
		}
		defer m.ctx.DestroyObject(s, h)
		kcv, err := m.encrypt(s, h, mech, nil, make([]byte, n))
		if err != nil {
			return fmt.Errorf("hsm: component check value: %w", err)
		}
		out = strings.ToUpper(hex.EncodeToString(kcv[:3]))
		return nil
	})
	return out, err
}

// object returns the session object of a wrapped key, unwrapping it under the KEK the first
// time. The object is non-extractable: it can encrypt and decrypt, nothing else.
func (m *Module) object(w []byte, keyType uint) (pkcs11.ObjectHandle, error) {
	m.mu.Lock()
	m.calls.use++
	if c := m.cache[string(w)]; c != nil {
		c.used = m.calls.use
		m.mu.Unlock()
		return c.h, nil
	}
	m.mu.Unlock()
	m.ownerMu.Lock()
	h, err := m.ctx.UnwrapKey(m.owner, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_WRAP_PAD, nil)}, m.kek, w,
		template(keyType, false, false, pkcs11.CKA_ENCRYPT, pkcs11.CKA_DECRYPT))
	m.ownerMu.Unlock()
	if err != nil {
		return 0, fmt.Errorf("hsm: key block does not unwrap under this token's KEK %s (%v)", m.kekID, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if c := m.cache[string(w)]; c != nil { // another goroutine was first
		m.ownerMu.Lock()
		m.ctx.DestroyObject(m.owner, h)
		m.ownerMu.Unlock()
		return c.h, nil
	}
	if len(m.cache) >= maxCached {
		m.evict()
	}
	m.cache[string(w)] = &cached{h: h, used: m.calls.use}
	return h, nil
}

// evict drops the least recently used quarter of the cache. An operation already holding an
// evicted handle fails with an invalid handle and is retried (see retry).
func (m *Module) evict() {
	var oldest uint64 = m.calls.use - m.calls.use/4
	n := 0
	for k, c := range m.cache {
		if c.used < oldest || n < len(m.cache)/4 {
			if op := m.ops[c.h]; op != nil {
				op.close(m)
				delete(m.ops, c.h)
			}
			m.ownerMu.Lock()
			m.ctx.DestroyObject(m.owner, c.h)
			m.ownerMu.Unlock()
			delete(m.cache, k)
			n++
		}
	}
}

func (m *Module) forget(w []byte) {
	m.mu.Lock()
	if c := m.cache[string(w)]; c != nil {
		if op := m.ops[c.h]; op != nil {
			op.close(m)
			delete(m.ops, c.h)
		}
	}
	delete(m.cache, string(w))
	m.mu.Unlock()
}

// retry runs op on the object of w, unwrapping it again once if its handle went stale.
func (m *Module) retry(w []byte, keyType uint, op func(h pkcs11.ObjectHandle) error) error {
	h, err := m.object(w, keyType)
	if err != nil {
		return err
	}
	if err = op(h); err != nil && (errors.Is(err, pkcs11.Error(pkcs11.CKR_KEY_HANDLE_INVALID)) || errors.Is(err, pkcs11.Error(pkcs11.CKR_OBJECT_HANDLE_INVALID))) {
		m.forget(w)
		if h, err = m.object(w, keyType); err == nil {
			err = op(h)
		}
	}
	return err
}

func (m *Module) encrypt(s pkcs11.SessionHandle, h pkcs11.ObjectHandle, mech uint, iv, data []byte) ([]byte, error) {
	if err := m.ctx.EncryptInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(mech, iv)}, h); err != nil {
		return nil, err
	}
	return m.ctx.Encrypt(s, data)
}

func (m *Module) decrypt(s pkcs11.SessionHandle, h pkcs11.ObjectHandle, mech uint, data []byte) ([]byte, error) {
	if err := m.ctx.DecryptInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(mech, nil)}, h); err != nil {
		return nil, err
	}
	return m.ctx.Decrypt(s, data)
}

// CheckBlock verifies that a block is this token's and that its check value matches the key.
func (m *Module) CheckBlock(b keys.Block) error {
	if b.KEK != m.kekID {
		return fmt.Errorf("key block is wrapped under KEK %s, this token's KEK is %s", b.KEK, m.kekID)
	}
	var kcv []byte
	err := m.retry(b.Wrapped, pkcs11.CKK_DES2, func(h pkcs11.ObjectHandle) error {
		return m.session(func(s pkcs11.SessionHandle) (err error) {
			kcv, err = m.encrypt(s, h, pkcs11.CKM_DES3_ECB, nil, make([]byte, 8))
			return err
		})
	})
	if err != nil {
		return err
	}
	if got := strings.ToUpper(hex.EncodeToString(kcv[:3])); subtle.ConstantTimeCompare([]byte(got), []byte(strings.ToUpper(b.KCV))) != 1 {
		return fmt.Errorf("key block check value: the block says %s, the key gives %s", b.KCV, got)
	}
	return nil
}

// SetZoneKey makes b, with index (F53: 0 for the key agreed out of band, 1-99 for one sent by a
// key change), the zone PIN key PIN blocks are translated to. The previous one stays in the token
// until the next change, so a rotation never leaves a moment without a key.
func (m *Module) SetZoneKey(b keys.Block, index int) error {
	if b.KEK != m.kekID {
		return fmt.Errorf("zone PIN key: key block is wrapped under KEK %s, this token's KEK is %s", b.KEK, m.kekID)
	}
	m.ownerMu.Lock()
	h, err := m.ctx.UnwrapKey(m.owner, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_WRAP_PAD, nil)}, m.kek, b.Wrapped,
		template(pkcs11.CKK_DES2, false, false, pkcs11.CKA_ENCRYPT))
	m.ownerMu.Unlock()
	if err != nil {
		return fmt.Errorf("zone PIN key: the block does not unwrap under this token's KEK %s (%v)", m.kekID, err)
	}
	// its check value, on the object itself (not through the cache of working keys, which
	// would keep a second object of it)
	var kcv []byte
	err = m.session(func(s pkcs11.SessionHandle) (err error) {
		kcv, err = m.encrypt(s, h, pkcs11.CKM_DES3_ECB, nil, make([]byte, 8))
		return err
	})
	if err == nil {
		if got := strings.ToUpper(hex.EncodeToString(kcv[:3])); subtle.ConstantTimeCompare([]byte(got), []byte(strings.ToUpper(b.KCV))) != 1 {
			err = fmt.Errorf("key block check value: the block says %s, the key gives %s", b.KCV, got)
		}
	}
	if err != nil {
		m.ownerMu.Lock()
		m.ctx.DestroyObject(m.owner, h)
		m.ownerMu.Unlock()
		return fmt.Errorf("zone PIN key: %w", err)
	}
	m.mu.Lock()
	old := m.zpkOld
	m.zpkOld, m.zpk, m.zpkIndex = m.zpk, h, index
	op := m.ops[old]
	delete(m.ops, old)
	m.mu.Unlock()
	if op != nil {
		op.close(m) // its long-lived session: one per key that was ever the zone key otherwise
	}
	if old != 0 {
		m.ownerMu.Lock()
		m.ctx.DestroyObject(m.owner, old)
		m.ownerMu.Unlock()
	}
	return nil
}

func zero(b []byte) {
	for i := range b {
		b[i] = 0
	}
}

type callCounter struct{ use uint64 }

// keyOp is a long-lived ECB operation under one key object on a session of its own: a PKCS#11
// operation costs its C_EncryptInit (the token looks the key up and builds its key schedule:
// tens of µs in SoftHSM with OpenSSL 3) and then a C_EncryptUpdate per block (about 2 µs). ECB
// keeps no state between blocks, so one operation that is never finalised serves every MAC (or
// PIN block) of a signed-on terminal. Opened on first use, closed when its key object leaves the
// cache.
type keyOp struct {
	mu   sync.Mutex
	s    pkcs11.SessionHandle
	open bool
}

// maxOps bounds the sessions held by long-lived operations (two per active terminal); beyond
// it operations fall back to one-shot calls on the pooled sessions.
const maxOps = 8192

func (op *keyOp) close(m *Module) {
	op.mu.Lock()
	defer op.mu.Unlock()
	if op.open {
		m.ctx.CloseSession(op.s)
		op.open = false
	}
}

// stream runs f with an update function on the long-lived ECB operation (decrypt or encrypt)
// of key object h, opening it the first time.
func (m *Module) stream(h pkcs11.ObjectHandle, decrypt bool, f func(upd func([]byte) ([]byte, error)) error) error {
	m.mu.Lock()
	op := m.ops[h]
	if op == nil && len(m.ops) < maxOps {
		op = &keyOp{}
		m.ops[h] = op
	}
	m.mu.Unlock()
	if op == nil {
		return m.session(func(s pkcs11.SessionHandle) error {
			return f(func(in []byte) ([]byte, error) {
				if decrypt {
					return m.decrypt(s, h, pkcs11.CKM_DES3_ECB, in)
				}
				return m.encrypt(s, h, pkcs11.CKM_DES3_ECB, nil, in)
			})
		})
	}
	op.mu.Lock()
	defer op.mu.Unlock()
	if !op.open {
		s, err := m.ctx.OpenSession(m.slot, pkcs11.CKF_SERIAL_SESSION)
		if err != nil {
			return fmt.Errorf("hsm: C_OpenSession: %w", err)
		}
		mech := []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_DES3_ECB, nil)}
		if decrypt {
			err = m.ctx.DecryptInit(s, mech, h)
		} else {
			err = m.ctx.EncryptInit(s, mech, h)
		}
		if err != nil {
			m.ctx.CloseSession(s)
			return err
		}
		op.s, op.open = s, true
	}
	err := f(func(in []byte) ([]byte, error) {
		if decrypt {
			return m.ctx.DecryptUpdate(op.s, in)
		}
		return m.ctx.EncryptUpdate(op.s, in)
	})
	if err != nil { // the operation ends with an error: a fresh one next time
		m.ctx.CloseSession(op.s)
		op.open = false
	}
	return err
}
