package money

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParse(t *testing.T) {
	for s, want := range map[string]int64{
		"12.34": 1234, "12.3": 1230, "12": 1200, "0.05": 5, "0.5": 50, " 7.00 ": 700, "1000.00": 100000,
		"0": 0, "0.00": 0, "007.10": 710, "9999999999.99": Max, "90000000000.00": 9000000000000,
	} {
		got, err := Parse(s)
		require.NoError(t, err, s)
		assert.Equal(t, want, got, s)
	}
	for s, why := range map[string]string{
		"12.345":              "3 decimals",
		"0.001":               "3 decimals",
		"1e2":                 "exponents",
		"1E2":                 "exponents",
		"-5":                  "negative",
		"-0.01":               "negative",
		"+5":                  "no sign",
		"":                    "empty",
		"12.":                 "no digits after",
		".5":                  "no digits before",
		"1,000.00":            "grouping commas",
		"12.3a":               "not a digit",
		"¥12":                 "not a digit",
		"NaN":                 "not a digit",
		"Inf":                 "not a digit",
		"0x10":                "not a digit",
		"1000000000000000.00": "more than 15 digits",
	} {
		_, err := Parse(s)
		require.Error(t, err, s)
		assert.Contains(t, err.Error(), why, s)
		assert.Contains(t, err.Error(), "expected yuan with at most 2 decimals", s)
	}
}

func TestPositive(t *testing.T) {
	v, err := Positive("0.01")
	require.NoError(t, err)
	assert.Equal(t, int64(1), v)
	for _, s := range []string{"0", "0.00", "000"} {
		_, err := Positive(s)
		assert.ErrorContains(t, err, "above zero", s)
	}
	_, err = Positive("12.345")
	assert.ErrorContains(t, err, "3 decimals")
	_, err = Positive("10000000000.00")
	assert.ErrorContains(t, err, "F4 carries 12 digits")
}

func TestFormat(t *testing.T) {
	assert.Equal(t, "12.34", Format(1234))
	assert.Equal(t, "0.05", Format(5))
	assert.Equal(t, "-12.34", Format(-1234))
	assert.Equal(t, "9999999999.99", Format(Max))
}

// FuzzParse: whatever parses formats back to the same amount, and never exceeds F4.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"12.34", "1e2", "0.001", "-1", "9999999999.99"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := Parse(s)
		if err != nil {
			return
		}
		if v < 0 || v >= 1e17 {
			t.Fatalf("%q parsed to %d", s, v)
		}
		back, err := Parse(Format(v))
		if err != nil || back != v {
			t.Fatalf("%q: %d formats as %q which parses to %d, %v", s, v, Format(v), back, err)
		}
	})
}
