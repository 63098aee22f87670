package terminals

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
)

func parse(t *testing.T, src string) (*Registry, error) {
	var n yaml.Node
	require.NoError(t, yaml.Unmarshal([]byte(src), &n))
	return Parse(&n)
}

const good = `
rules:
  qps_limit: "500.00"
  min_sdk_version: "3.1"
qps_whitelist:
  "898310058120001": 2026-01-05
merchants:
  - mid: "898310058120001"
    name: 测试餐厅
    name_en: Test Restaurant
    qps: true
terminals:
  - tid: "12345678"
    mid: "898310058120001"
    serial: SN0001
    tmk: demo
`

func TestParseDefaultsAndWhitelist(t *testing.T) {
	r, err := parse(t, good)
	require.NoError(t, err)
	m := r.Merchant("898310058120001")
	require.Equal(t, "5812", m.MCC, "MCC defaults to MID digits 8-11")
	require.True(t, m.Enabled && m.Direct && m.RefundAllowed)
	require.Equal(t, int64(50000), r.Rules.QPSLimit)
	require.Equal(t, Version{3, 1, 0}, r.Rules.MinSDK)
	require.Equal(t, 365, r.Rules.RefundWindowDays)
	require.True(t, r.Rules.IsCash("6011"))
	require.False(t, m.OnWhitelist(time.Date(2026, 1, 5, 15, 0, 0, 0, time.Local)), "registered today: not yet (T+1)")
	require.True(t, m.OnWhitelist(time.Date(2026, 1, 6, 0, 0, 1, 0, time.Local)))
	tm := r.Terminal("12345678", "898310058120001")
	require.Equal(t, Production, tm.Env)
	require.True(t, tm.DemoTMK)
}

func TestParseErrorsNameTheLine(t *testing.T) {
	cases := map[string]struct {
		src  string
		line int
		key  string
	}{
		"bad limit":     {"rules:\n  qps_limit: abc\n", 2, "rules.qps_limit"},
		"unknown key":   {"merchants:\n  - mid: \"898310058120001\"\n    colour: red\n", 3, "merchants[0].colour"},
		"short MID":     {"merchants:\n  - mid: \"8983\"\n", 2, "merchants[0].mid"},
		"bad env":       {good + "  - tid: \"87654321\"\n    mid: \"898310058120001\"\n    env: staging\n    serial: X\n    tmk: demo\n", 19, "terminals[1].env"},
		"bad tmk":       {good + "  - tid: \"87654321\"\n    mid: \"898310058120001\"\n    serial: X\n    tmk: 12\n", 20, "terminals[1].tmk"},
		"clear tmk":     {good + "  - tid: \"87654321\"\n    mid: \"898310058120001\"\n    serial: X\n    tmk: 0123456789ABCDEFFEDCBA9876543210\n", 20, "terminals[1].tmk"},
		"unknown mid":   {good + "  - tid: \"87654321\"\n    mid: \"898310058129999\"\n    serial: X\n    tmk: demo\n", 18, "terminals[1].mid"},
		"whitelist day": {"qps_whitelist:\n  \"898310058120001\": tomorrow\n", 2, "qps_whitelist.898310058120001"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := parse(t, c.src)
			var ce *ConfigError
			require.ErrorAs(t, err, &ce)
			require.Equal(t, c.line, ce.Line, err.Error())
			require.Equal(t, c.key, ce.Key, err.Error())
		})
	}
}

func TestAmountsAndVersions(t *testing.T) {
	for s, want := range map[string]int64{"1000.00": 100000, "1000": 100000, "0.5": 50, "12.34": 1234} {
		got, err := ParseAmount(s)
		require.NoError(t, err)
		require.Equal(t, want, got)
	}
	for _, s := range []string{"", "1.234", "-1", "1.", "x"} {
		_, err := ParseAmount(s)
		require.Error(t, err, s)
	}
	a, _ := ParseVersion("3.2.1")
	b, _ := ParseVersion("3.10")
	require.True(t, a.Less(b))
	_, err := ParseVersion("3.x")
	require.Error(t, err)
}
