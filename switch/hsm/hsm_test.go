package hsm

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/shoudan/shoudan/spec/keys"
	"github.com/stretchr/testify/require"
)

func unhex(s string) []byte { b, _ := hex.DecodeString(s); return b }

var (
	testTMK = unhex("0123456789ABCDEFFEDCBA9876543210")
	testZPK = unhex("00112233445566778899AABBCCDDEEFF")
	shared  *Module
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "shoudan-hsm-")
	if err != nil {
		panic(err)
	}
	cfg, err := Embedded(dir)
	if err != nil {
		panic(err)
	}
	if shared, err = Open(cfg); err != nil {
		panic(err)
	}
	code := m.Run()
	shared.Close()
	os.RemoveAll(dir)
	os.Exit(code)
}

func tmkBlock(t testing.TB, m *Module, clear []byte) keys.Block {
	b, err := m.Import("TMK", append([]byte(nil), clear...))
	require.NoError(t, err)
	return b
}

// A sign-on's field 62 decrypts under the clear TMK (as the terminal does) with every check
// value right, and the keys the module keeps MAC and translate exactly as the clear keys would.
func TestSignOnMACAndPINMatchTheClearKeys(t *testing.T) {
	m := shared
	kcv, _ := keys.KCV(testTMK)
	b := tmkBlock(t, m, testTMK)
	require.Equal(t, hex.EncodeToString(kcv[:3]), lower(b.KCV))
	require.NoError(t, m.CheckBlock(b))
	zb, err := m.Import("ZPK", append([]byte(nil), testZPK...))
	require.NoError(t, err)
	require.NoError(t, m.SetZoneKey(zb, 0))
	for _, nmi := range []string{"001", "003", "004"} {
		f62, sealed, err := m.SignOn(b, nmi)
		require.NoError(t, err, nmi)
		wk, err := keys.ParseKeyBlock(testTMK, nmi, f62)
		require.NoError(t, err, nmi)
		require.False(t, bytes.Contains(sealed, wk.TAK) || bytes.Contains(sealed, wk.TPK), "the sealed keys contain a clear key")
		k, err := m.OpenKeys(sealed)
		require.NoError(t, err)
		mab := []byte("0200702406C020C09A11196222021234567890123000000000000000100")
		got, err := k.MAC(mab)
		require.NoError(t, err)
		want, _ := keys.MAC(wk.TAK, mab)
		require.Equal(t, want, got, nmi)
		pan := "6222021234567890123"
		pb, _ := keys.PINBlock(wk.TPK, "123456", pan)
		zpb, _, err := k.TranslatePIN(pb, pan)
		require.NoError(t, err)
		pin, err := keys.ClearPIN(testZPK, zpb, pan)
		require.NoError(t, err)
		require.Equal(t, "123456", pin)
		_, _, err = k.TranslatePIN(pb, "6222021234567890131") // another card's PAN: not format 0 for it
		require.Error(t, err)
	}
}

func TestBlockOfAnotherKEKIsRefused(t *testing.T) {
	b := tmkBlock(t, shared, testTMK)
	b.KEK = "00000000"
	_, _, err := shared.SignOn(b, "003")
	require.ErrorContains(t, err, "KEK 00000000")
	b = tmkBlock(t, shared, testTMK)
	b.Wrapped[3] ^= 1
	_, _, err = shared.SignOn(b, "003")
	require.Error(t, err, "a damaged block unwraps")
}

func lower(s string) string { return string(bytes.ToLower([]byte(s))) }

func BenchmarkMAC(b *testing.B) {
	blk := tmkBlock(b, shared, testTMK)
	_, sealed, _ := shared.SignOn(blk, "003")
	k, _ := shared.OpenKeys(sealed)
	mab := bytes.Repeat([]byte("0200702406C020C09A11"), 8)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := k.MAC(mab); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkTranslatePIN(b *testing.B) {
	blk := tmkBlock(b, shared, testTMK)
	zb, _ := shared.Import("ZPK", append([]byte(nil), testZPK...))
	_ = shared.SetZoneKey(zb, 0)
	f62, sealed, _ := shared.SignOn(blk, "003")
	wk, _ := keys.ParseKeyBlock(testTMK, "003", f62)
	k, _ := shared.OpenKeys(sealed)
	pan := "6222021234567890123"
	pb, _ := keys.PINBlock(wk.TPK, "123456", pan)
	b.ReportAllocs()
	b.RunParallel(func(p *testing.PB) {
		for p.Next() {
			if _, _, err := k.TranslatePIN(pb, pan); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkSignOn(b *testing.B) {
	blk := tmkBlock(b, shared, testTMK)
	for i := 0; i < b.N; i++ {
		if _, _, err := shared.SignOn(blk, "003"); err != nil {
			b.Fatal(err)
		}
	}
}

// The ceremony: components in, each check value and the combined one out; the block it stores
// is the XOR of the components. A mistyped component gives another check value and no block.
func TestCeremony(t *testing.T) {
	c1, c2 := "11111111111111112222222222222222", "10325476981B3C5DDCFE98BA54761032"
	clear := unhex(c1)
	for i, b := range unhex(c2) {
		clear[i] ^= b
	}
	kcv, _ := keys.KCV(clear)
	want := strings.ToUpper(hex.EncodeToString(kcv[:3]))
	var out bytes.Buffer
	b, err := Ceremony{Usage: "TMK", For: "terminal 10000001", Components: 2, In: strings.NewReader(c1 + "\n" + c2 + "\n" + want + "\n"), Out: &out}.Run(shared)
	require.NoError(t, err)
	require.Equal(t, want, b.KCV)
	k1, _ := keys.KCV(unhex(c1))
	require.Contains(t, out.String(), "component 1 check value: "+strings.ToUpper(hex.EncodeToString(k1[:3])))
	require.Contains(t, out.String(), "Combined key check value: "+want)
	require.NotContains(t, out.String(), c1[:8])
	f62, _, err := shared.SignOn(b, "003")
	require.NoError(t, err)
	_, err = keys.ParseKeyBlock(clear, "003", f62) // the terminal holding the combined key signs on
	require.NoError(t, err)

	wrong := "1111111111111111222222222222222A" // one digit off (not only a parity bit, which DES ignores)
	out.Reset()
	b, err = Ceremony{Usage: "TMK", For: "terminal 10000001", Components: 2, In: strings.NewReader(wrong + "\n" + c2 + "\n" + want + "\n"), Out: &out}.Run(shared)
	require.ErrorContains(t, err, "nothing stored")
	require.Empty(t, b.Wrapped)
	require.NotContains(t, out.String(), "Combined key check value: "+want)

	_, err = Ceremony{Usage: "TMK", For: "x", Components: 2, In: strings.NewReader("12345\n"), Out: &out}.Run(shared)
	require.ErrorContains(t, err, "expected 16, 32 or 48 hex digits")
}

// The same operations in software (spec/keys, keys in memory), for comparison in the same run.
func BenchmarkSoftwareMAC(b *testing.B) {
	tak := unhex("1111111111111111")
	mab := bytes.Repeat([]byte("0200702406C020C09A11"), 8)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := keys.MAC(tak, mab); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkSoftwareTranslatePIN(b *testing.B) {
	tpk := unhex("0123456789ABCDEFFEDCBA9876543210")
	pan := "6222021234567890123"
	pb, _ := keys.PINBlock(tpk, "123456", pan)
	b.RunParallel(func(p *testing.PB) {
		for p.Next() {
			pin, err := keys.ClearPIN(tpk, pb, pan)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := keys.PINBlock(testZPK, pin, pan); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// A zone PIN key generated in the token for a key change: the copy under the ZMK unwraps in
// software (as the issuer does it, RFC 5649) to the key whose check value the block carries, and
// once set with its index, PIN blocks are translated to that key and report the index. A ZMK
// entered with a wrong component is refused by its check value, never used.
func TestZoneKeyForAKeyChange(t *testing.T) {
	m := shared
	zmk := unhex("000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F")
	kcv, err := m.ComponentKCV("ZMK", zmk)
	require.NoError(t, err)
	want, _ := keys.KCVAES(zmk)
	require.Equal(t, want, kcv)
	zb, err := m.Import("ZMK", append([]byte(nil), zmk...))
	require.NoError(t, err)
	require.Equal(t, want, zb.KCV)

	zpk, under, err := m.NewZoneKey(zb)
	require.NoError(t, err)
	clear, err := keys.UnwrapAES(zmk, under)
	require.NoError(t, err)
	require.Len(t, clear, 16)
	zk, _ := keys.KCV(clear)
	require.Equal(t, fmt.Sprintf("%X", zk[:3]), zpk.KCV)
	require.False(t, bytes.Contains(zpk.Wrapped, clear) || bytes.Contains(under, clear))

	require.NoError(t, m.SetZoneKey(zpk, 7))
	tmk := tmkBlock(t, m, testTMK)
	f62, sealed, err := m.SignOn(tmk, "003")
	require.NoError(t, err)
	wk, err := keys.ParseKeyBlock(testTMK, "003", f62)
	require.NoError(t, err)
	k, err := m.OpenKeys(sealed)
	require.NoError(t, err)
	pan := "6222021234567890123"
	pb, _ := keys.PINBlock(wk.TPK, "123456", pan)
	zpb, index, err := k.TranslatePIN(pb, pan)
	require.NoError(t, err)
	require.Equal(t, 7, index)
	pin, err := keys.ClearPIN(clear, zpb, pan)
	require.NoError(t, err)
	require.Equal(t, "123456", pin)

	bad := zb
	bad.KCV = "000000"
	_, _, err = m.NewZoneKey(bad)
	require.ErrorContains(t, err, "check value")
	_, _, err = m.NewZoneKey(tmk)
	require.ErrorContains(t, err, "expected a ZMK block")
	wrong := zpk
	wrong.KCV = "ABCDEF"
	require.ErrorContains(t, m.SetZoneKey(wrong, 8), "check value")
	zpb, index, err = k.TranslatePIN(pb, pan) // the refused block changed nothing
	require.NoError(t, err)
	require.Equal(t, 7, index)
}
