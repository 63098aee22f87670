package keys

import (
	"encoding/hex"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func h(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

// The two examples of RFC 5649 §6.
func TestWrapAESMatchesRFC5649(t *testing.T) {
	kek := h("5840df6e29b02af1 ab493b705bf16ea1 ae8338f4dcc176a8")
	for _, c := range []struct{ key, wrapped string }{
		{"c37b7e6492584340 bed1220780894115 5068f738", "138bdeaa9b8fa7fc 61f97742e72248ee 5ae6ae5360d1ae6a 5f54f373fa543b6a"},
		{"466f7250617369", "afbeb0f07dfbf541 9200f2ccb50bb24f"},
	} {
		w, err := WrapAES(kek, h(c.key))
		require.NoError(t, err)
		require.Equal(t, h(c.wrapped), w)
		k, err := UnwrapAES(kek, w)
		require.NoError(t, err)
		require.Equal(t, h(c.key), k)
	}
}

func TestUnwrapAESRefusesAnotherKEKAndDamage(t *testing.T) {
	kek := h("000102030405060708090A0B0C0D0E0F")
	w, err := WrapAES(kek, h("00112233445566778899AABBCCDDEEFF"))
	require.NoError(t, err)
	require.Len(t, w, 24)
	_, err = UnwrapAES(h("0F0E0D0C0B0A09080706050403020100"), w)
	require.ErrorContains(t, err, "integrity check failed")
	w[5] ^= 1
	_, err = UnwrapAES(kek, w)
	require.ErrorContains(t, err, "integrity check failed")
	_, err = UnwrapAES(kek, w[:20])
	require.ErrorContains(t, err, "multiple of 8 bytes")
}
