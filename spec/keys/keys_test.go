package keys

import (
	"crypto/des"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func unhex(s string) []byte { b, _ := hex.DecodeString(strings.ReplaceAll(s, " ", "")); return b }

func TestDESKnownAnswer(t *testing.T) {
	// FIPS 81 / classic DES vector: key 0123456789ABCDEF, "Now is t" → 3FA40E8A984D4815
	c, err := EncryptECB(unhex("0123456789ABCDEF"), []byte("Now is t"))
	require.NoError(t, err)
	require.Equal(t, "3fa40e8a984d4815", hex.EncodeToString(c))
	// a double-length key K‖K is single DES
	c2, err := EncryptECB(unhex("0123456789ABCDEF0123456789ABCDEF"), []byte("Now is t"))
	require.NoError(t, err)
	require.Equal(t, c, c2)
}

// TestMACFollowsProtocolSteps recomputes the CUP ECB MAC step by step from protocol.md §6 with
// crypto/des directly and compares.
func TestMACFollowsProtocolSteps(t *testing.T) {
	tak := unhex("1122334455667788")
	mab := []byte("0200\x70\x20 any bytes at all, 29 long") // not a multiple of 8
	var r [8]byte
	padded := append(append([]byte{}, mab...), make([]byte, (8-len(mab)%8)%8)...)
	for i := 0; i < len(padded); i += 8 {
		for j := 0; j < 8; j++ {
			r[j] ^= padded[i+j]
		}
	}
	h := strings.ToUpper(hex.EncodeToString(r[:]))
	c, _ := des.NewCipher(tak)
	e1 := make([]byte, 8)
	c.Encrypt(e1, []byte(h[:8]))
	for j := 0; j < 8; j++ {
		e1[j] ^= h[8+j]
	}
	e2 := make([]byte, 8)
	c.Encrypt(e2, e1)
	want := strings.ToUpper(hex.EncodeToString(e2))[:8]

	got, err := MAC(tak, mab)
	require.NoError(t, err)
	require.Equal(t, want, string(got[:]))
	ok, _ := VerifyMAC(tak, mab, got[:])
	require.True(t, ok)
	mab[3] ^= 1
	ok, _ = VerifyMAC(tak, mab, got[:])
	require.False(t, ok)
}

func TestKeyBlocksRoundTripAndCheckValues(t *testing.T) {
	tmk8 := unhex("0123456789ABCDEF")
	tmk16 := unhex("0123456789ABCDEFFEDCBA9876543210")
	k1 := WorkingKeys{TPK: unhex("1111111111111111"), TAK: unhex("2222222222222222")}
	b, err := KeyBlock(tmk8, "001", k1)
	require.NoError(t, err)
	require.Len(t, b, 24)
	got, err := ParseKeyBlock(tmk8, "001", b)
	require.NoError(t, err)
	require.Equal(t, k1, got)

	k4 := WorkingKeys{TPK: unhex("1111111111111111 3333333333333333"), TAK: unhex("2222222222222222"), TDK: unhex("4444444444444444 5555555555555555")}
	for nmi, size := range map[string]int{"003": 40, "004": 60} {
		k := k4
		if nmi == "003" {
			k.TDK = nil
		}
		b, err := KeyBlock(tmk16, nmi, k)
		require.NoError(t, err)
		require.Len(t, b, size)
		require.Equal(t, make([]byte, 8), b[28:36], "8 zero bytes after the single-length MAC key")
		got, err := ParseKeyBlock(tmk16, nmi, b)
		require.NoError(t, err)
		require.Equal(t, k, got)
		b[17] ^= 0xFF // corrupt the TPK check value
		_, err = ParseKeyBlock(tmk16, nmi, b)
		require.ErrorContains(t, err, "check value at offset 16")
	}
	kcv, _ := KCV(unhex("0123456789ABCDEF"))
	e, _ := EncryptECB(unhex("0123456789ABCDEF"), make([]byte, 8))
	require.Equal(t, e[:4], kcv)
}

func TestPINBlockFormat0(t *testing.T) {
	tpk := unhex("0123456789ABCDEFFEDCBA9876543210")
	pan := "6222021234567890123"
	b, err := PINBlock(tpk, "123456", pan)
	require.NoError(t, err)
	// the clear block is 06123456FFFFFFFF XOR 0000 + 12 digits before the check digit
	clear, _ := DecryptECB(tpk, b)
	require.Equal(t, "06123456ffffffff", hex.EncodeToString(xor(clear, unhex("0000"+pan[len(pan)-13:len(pan)-1]))))
	pin, err := ClearPIN(tpk, b, pan)
	require.NoError(t, err)
	require.Equal(t, "123456", pin)
	_, err = ClearPIN(tpk, b, "6222021234567890124"+"5") // another PAN: not a valid block
	require.Error(t, err)
}

func xor(a, b []byte) []byte {
	out := make([]byte, len(a))
	for i := range a {
		out[i] = a[i] ^ b[i]
	}
	return out
}
