package app

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// withIssuer replaces the demo's "  addrs: []" line with lines of the issuer section
// (and drops the demo's conns line).
func withIssuer(lines string) []byte {
	y := strings.Replace(string(Demo), "  addrs: []          # empty: run the simulated issuer in-process with issuer.sim\n", lines, 1)
	i := strings.Index(y, "  conns: 4 ")
	j := i + strings.Index(y[i:], "\n") + 1
	return []byte(y[:i] + y[j:])
}

// addrsLine is the line of "  addrs: []" in the demo config.
func addrsLine() int {
	return strings.Count(string(Demo[:strings.Index(string(Demo), "  addrs: []")]), "\n") + 1
}

func TestIssuerConfigDefaults(t *testing.T) {
	c, _, err := Parse(Demo)
	require.NoError(t, err)
	assert.Equal(t, 4, c.Issuer.Conns)
	assert.Equal(t, 10*time.Second, c.Shutdown.Drain)
	lc := c.LinkConfig("127.0.0.1:7000")
	require.Len(t, lc.Routes, 1, "no addrs and no routes: the in-process simulator is the default route")
	assert.Equal(t, "default", lc.Default)
	assert.Equal(t, "127.0.0.1:7000", lc.Routes[0].Primary)

	c, _, err = Parse(withIssuer(`  addrs: ["10.0.0.1:7000", "10.0.0.2:7000"]
  conns: 2
  routes:
    - {name: bank-b, primary: "10.1.0.1:7000", secondary: "10.1.0.2:7000", institution: "03080000"}
  bins:
    "62220200": bank-b
`))
	require.NoError(t, err)
	lc = c.LinkConfig("")
	assert.Equal(t, "default", lc.Default, "issuer.addrs stays the default route")
	require.Len(t, lc.Routes, 2)
	assert.Equal(t, "10.0.0.2:7000", lc.Routes[0].Secondary)
	assert.Equal(t, map[string]string{"62220200": "bank-b"}, lc.BINs)
	assert.Equal(t, 2, lc.Conns)
}

func TestIssuerConfigErrors(t *testing.T) {
	for _, tc := range []struct{ lines, want string }{
		{"  conns: 65\n", "line +0: issuer.conns: expected 1..64 connections per endpoint, found 65"},
		{"  addrs: [\"a:1\", \"b:2\", \"c:3\"]\n", "line +0: issuer.addrs: expected a primary and at most a secondary address, found 3"},
		{"  addrs: [\"nohost\"]\n", `line +0: issuer.addrs[0]: expected host:port, found "nohost"`},
		{"  routes:\n    - {name: b, primary: \"h:1\"}\n", "line +0: issuer.default_route: expected the route for cards no BIN matches"},
		{"  routes:\n    - {name: B!, primary: \"h:1\"}\n  default_route: B!\n", `line +1: issuer.routes[0].name: expected 1-32 of a-z 0-9 _ -`},
		{"  routes:\n    - {name: b, primary: \"h:1\", backup: \"h:2\"}\n  default_route: b\n", "line +1: issuer.routes[0].backup: unknown key"},
		{"  routes:\n    - {name: b, primary: \"h:1\", secondary: \"h:1\"}\n  default_route: b\n", "line +1: issuer.routes[0].secondary: expected another endpoint than the primary"},
		{"  routes:\n    - {name: b, primary: \"h:99999\"}\n  default_route: b\n", "line +1: issuer.routes[0].primary: expected a port 1..65535"},
		{"  routes:\n    - {name: b, primary: \"h:1\"}\n    - {name: b, primary: \"h:2\"}\n  default_route: b\n", "line +2: issuer.routes[1].name: another route has this name"},
		{"  routes:\n    - {name: b, primary: \"h:1\", institution: \"12a\"}\n  default_route: b\n", "line +1: issuer.routes[0].institution: expected an institution code of 1-11 digits"},
		{"  routes:\n    - {name: b, primary: \"h:1\"}\n  default_route: c\n", `line +2: issuer.default_route: no route "c"`},
		{"  addrs: [\"h:1\"]\n  bins:\n    \"6222\": nowhere\n", `line +2: issuer.bins.6222: no route "nowhere"`},
		{"  addrs: [\"h:1\"]\n  bins:\n    \"62x2\": default\n", "line +2: issuer.bins.62x2: expected a BIN prefix of 1-11 digits"},
		{"  bins:\n    \"6222\": default\n", `line +1: issuer.bins.6222: no route "default"`},
		{"  echo_interval: 10ms\n", "line +0: issuer.echo_interval: expected 1s..10m, found 10ms"},
	} {
		_, _, err := Parse(withIssuer(tc.lines))
		want := tc.want
		for off := range 3 { // lines counted from the demo's addrs line
			want = strings.Replace(want, fmt.Sprintf("line +%d: ", off), fmt.Sprintf("line %d: ", addrsLine()+off), 1)
		}
		if assert.Error(t, err, tc.lines) {
			assert.Contains(t, err.Error(), want, tc.lines)
		}
	}
	_, _, err := Parse(append(append([]byte{}, Demo...), "shutdown:\n  drain: 1h\n"...))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "shutdown.drain: expected 100ms..5m, found 1h0m0s")
}

// issuer.tls: a wrong or incomplete setting is refused with its line and what was expected; the
// in-process simulator (no addrs, no routes) is not dialed over TLS and issuer.sim takes no tls.
func TestIssuerTLSConfig(t *testing.T) {
	c, _, err := Parse(withIssuer("  addrs: [\"10.0.0.1:7000\"]\n  tls: {mode: mutual, cert: c.pem, key: c.key, ca: ca.pem, server_name: issuer.bank}\n"))
	require.NoError(t, err)
	assert.Equal(t, IssuerTLS{Mode: "mutual", Cert: "c.pem", Key: "c.key", CA: "ca.pem", ServerName: "issuer.bank"}, c.Issuer.TLS)
	c, _, err = Parse(Demo)
	require.NoError(t, err)
	assert.False(t, c.Issuer.TLS.On(), "TLS is off unless configured")

	for _, tc := range []struct{ lines, want string }{
		{"  addrs: [\"h:1\"]\n  tls: {mode: mutual, ca: ca.pem}\n", `line +1: issuer.tls: mode mutual: expected cert and key (the switch's client certificate and its key), found cert "" key ""`},
		{"  addrs: [\"h:1\"]\n  tls: {mode: mutual, cert: c.pem, ca: ca.pem}\n", `found cert "c.pem" key ""`},
		{"  addrs: [\"h:1\"]\n  tls:\n    mode: on\n", `line +2: issuer.tls.mode: expected off, tls or mutual, found "on"`},
		{"  addrs: [\"h:1\"]\n  tls: {mode: tls, cert: c.pem, key: c.key}\n", "line +1: issuer.tls.mode: mode tls presents no client certificate, found cert or key: expected mode mutual"},
		{"  addrs: [\"h:1\"]\n  tls: {mode: tls, client_ca: ca.pem}\n", "line +1: issuer.tls.client_ca: unknown key (expected mode, cert, key, ca, server_name)"},
		{"  addrs: [\"h:1\"]\n  tls: mutual\n", "line +1: issuer.tls: expected a mapping"},
		{"  addrs: []\n  tls: {mode: tls, ca: ca.pem}\n", "line +1: issuer.tls: expected issuer.addrs or issuer.routes to dial over TLS"},
	} {
		_, _, err := Parse(withIssuer(tc.lines))
		want := tc.want
		for off := range 3 {
			want = strings.Replace(want, fmt.Sprintf("line +%d: ", off), fmt.Sprintf("line %d: ", addrsLine()+off), 1)
		}
		if assert.Error(t, err, tc.lines) {
			assert.Contains(t, err.Error(), want, tc.lines)
		}
	}
	y := strings.Replace(string(Demo), "    control: 127.0.0.1:5080\n", "    control: 127.0.0.1:5080\n    tls: {cert: s.pem, key: s.key}\n", 1)
	_, _, err = Parse([]byte(y))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "issuer.sim.tls: the in-process simulator listens on loopback")
}
