package posswitch_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoudan/shoudan/issuerlink/sim"
	rc "github.com/shoudan/shoudan/responsecodes"
	"github.com/shoudan/shoudan/switch/app"
	"github.com/shoudan/shoudan/switch/netserve"
	"github.com/shoudan/shoudan/switch/switchtest"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
)

// pki is the certificates of the issuer-link TLS tests, as files: the issuer's server
// certificate (of issuerCA), the switch's client certificate (of switchCA), and a CA nobody
// trusts (otherCA).
type pki struct {
	dir                         string
	issuerCA, switchCA, otherCA *testCA
}

func newPKI(t *testing.T) *pki {
	p := &pki{dir: t.TempDir(), issuerCA: newCA(t, "issuer CA"), switchCA: newCA(t, "acquirer CA"), otherCA: newCA(t, "somebody else's CA")}
	writeAtomic(t, p.path("issuer-ca.pem"), p.issuerCA.pem)
	writeAtomic(t, p.path("switch-ca.pem"), p.switchCA.pem)
	return p
}

func (p *pki) path(name string) string { return filepath.Join(p.dir, name) }

// cert writes a certificate of ca and its key as name.pem and name.key (key first, then the
// certificate, as an operator replaces them) and returns the two paths.
func (p *pki) cert(t *testing.T, ca *testCA, name string, server bool) (certFile, keyFile string) {
	c, k, _ := ca.issue(t, name, server, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
	certFile, keyFile = p.path(name+".pem"), p.path(name+".key")
	writeAtomic(t, keyFile, k)
	writeAtomic(t, certFile, c)
	return certFile, keyFile
}

// tlsIssuer is the simulated issuer with the demo's cards listening over TLS with f on real TCP
// (the listener `shoudan issuer FILE` runs with a tls section), its log into log.
func tlsIssuer(t *testing.T, f sim.TLSFiles, log io.Writer) *sim.Server {
	t.Helper()
	c, _, err := app.Parse(app.Demo)
	require.NoError(t, err)
	is, err := c.Issuer.Sim.Build()
	require.NoError(t, err)
	s := sim.NewServer(is, sim.Faults{}, slog.New(slog.NewJSONHandler(log, nil)))
	require.NoError(t, s.UseTLS(f))
	require.NoError(t, s.Start("127.0.0.1:0", "127.0.0.1:0"))
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

// issuerAt points the test switch at addr (no in-process simulator) with issuer.tls tlsLine
// ("" = none).
func issuerAt(addr, tlsLine string) func(string) string {
	return func(y string) string {
		lines := fmt.Sprintf("  addrs: [%q]\n", addr)
		if tlsLine != "" {
			lines += "  tls: " + tlsLine + "\n"
		}
		return strings.Replace(y, "  addrs: []          # empty: run the simulated issuer in-process with issuer.sim\n", lines, 1)
	}
}

func fastTLSReload(t *testing.T) {
	old := netserve.PollEvery
	netserve.PollEvery = 50 * time.Millisecond
	t.Cleanup(func() { netserve.PollEvery = old })
}

// TestIssuerLinkMutualTLS: the switch and the simulated issuer as its own process (`shoudan
// issuer FILE` with a tls section), mutual TLS between them: a purchase is approved end to end,
// and the issuer saw it. The issuer refuses plaintext and clients without its CA's certificate,
// so the approval could only have come over mutual TLS.
func TestIssuerLinkMutualTLS(t *testing.T) {
	p := newPKI(t)
	issCert, issKey := p.cert(t, p.issuerCA, "issuer", true)
	swCert, swKey := p.cert(t, p.switchCA, "switch", false)

	c, _, err := app.Parse(app.Demo)
	require.NoError(t, err)
	sc := c.Issuer.Sim
	sc.Listen, sc.Control, sc.LedgerDir = switchtest.FreePort(t), switchtest.FreePort(t), "none"
	sc.TLS = sim.TLSFiles{Cert: issCert, Key: issKey, ClientCA: p.path("switch-ca.pem")}
	b, err := yaml.Marshal(sc)
	require.NoError(t, err)
	cfg := p.path("issuer.yaml")
	require.NoError(t, os.WriteFile(cfg, b, 0o600))
	var out syncBuffer
	cmd := exec.Command(switchtest.Binary(t), "issuer", cfg)
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	eventually(t, 20*time.Second, "the issuer process listens", func() bool { return strings.Contains(out.String(), "simulated issuer on") })
	require.Contains(t, out.String(), "(mutual TLS)")

	var logs syncBuffer
	s := switchtest.Start(t, switchtest.Options{Log: &logs, Edit: issuerAt(sc.Listen,
		fmt.Sprintf("{mode: mutual, cert: %q, key: %q, ca: %q}", swCert, swKey, p.path("issuer-ca.pem")))})
	require.Nil(t, s.Sim, "a configured issuer address: no in-process simulator")
	require.True(t, s.Link.Up(), "the link did not sign on over mutual TLS: %s\nissuer: %s", logs.String(), out.String())
	d := s.SignedOn("10000001")
	require.Equal(t, rc.Approved, bought(t, d, 100))

	resp, err := http.Get("http://" + sc.Control + "/received")
	require.NoError(t, err)
	defer resp.Body.Close()
	var got map[string]int64
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&got))
	require.GreaterOrEqual(t, got["0200"], int64(1), "the issuer did not receive the purchase: %v", got)
	require.GreaterOrEqual(t, got["0800"], int64(s.Config.Issuer.Conns), "every connection signs on over TLS: %v", got)
	require.NotContains(t, out.String(), "TLS handshake failed")
}

// TestIssuerRefusesSwitchCertificate: the switch's client certificate is of another CA. The
// issuer refuses it at the handshake; the link stays down, terminals get 91, and the switch's
// log says why. The operator puts the right certificate on disk: the switch uses it at its next
// reconnection, without a restart, and purchases are approved again.
func TestIssuerRefusesSwitchCertificate(t *testing.T) {
	fastTLSReload(t)
	p := newPKI(t)
	issCert, issKey := p.cert(t, p.issuerCA, "issuer", true)
	var simLog syncBuffer
	iss := tlsIssuer(t, sim.TLSFiles{Cert: issCert, Key: issKey, ClientCA: p.path("switch-ca.pem")}, &simLog)
	swCert, swKey := p.cert(t, p.otherCA, "switch", false) // the wrong CA

	var logs syncBuffer
	s := switchtest.Start(t, switchtest.Options{Log: &logs, Edit: issuerAt(iss.Addr,
		fmt.Sprintf("{mode: mutual, cert: %q, key: %q, ca: %q}", swCert, swKey, p.path("issuer-ca.pem")))})
	require.False(t, s.Link.Up(), "a certificate of another CA was accepted")
	d := s.SignedOn("10000001")
	require.Equal(t, rc.IssuerDown, bought(t, d, 100))
	eventually(t, 10*time.Second, "the switch logs why it cannot connect", func() bool {
		return strings.Contains(logs.String(), "the issuer refused the TLS session (tls: unknown certificate authority)")
	})
	require.Contains(t, simLog.String(), "certificate signed by unknown authority", "the issuer logs the refused handshake")
	require.Zero(t, iss.Received()["0200"], "nothing reached the issuer")

	// the right certificate, same files: picked up at the next reconnection
	p.cert(t, p.switchCA, "switch", false)
	eventually(t, 15*time.Second, "the link comes up with the renewed certificate", s.Link.Up)
	require.Equal(t, rc.Approved, bought(t, d, 100))
	require.Contains(t, logs.String(), "TLS certificate reloaded")
}

// TestIssuerLinkTLSMismatch: one side speaks TLS and the other does not. A plaintext switch
// against the TLS issuer, a TLS switch against a plaintext issuer, and a TLS switch against an
// endpoint that accepts and never says anything all fail each attempt cleanly, the handshake
// under the dial timeout: the link retries, terminals get 91 at once, and the log says what was
// expected.
func TestIssuerLinkTLSMismatch(t *testing.T) {
	p := newPKI(t)
	issCert, issKey := p.cert(t, p.issuerCA, "issuer", true)

	t.Run("plaintext switch, TLS issuer", func(t *testing.T) {
		var simLog, logs syncBuffer
		iss := tlsIssuer(t, sim.TLSFiles{Cert: issCert, Key: issKey}, &simLog)
		s := switchtest.Start(t, switchtest.Options{Log: &logs, Edit: issuerAt(iss.Addr, "")})
		require.False(t, s.Link.Up(), "a plaintext sign-on was answered by a TLS issuer")
		d := s.SignedOn("10000001")
		start := time.Now()
		require.Equal(t, rc.IssuerDown, bought(t, d, 100))
		require.Less(t, time.Since(start), 5*time.Second, "the terminal was left waiting on a link that is down")
		eventually(t, 10*time.Second, "the switch logs the refused plaintext", func() bool {
			return strings.Contains(logs.String(), "an issuer that expects TLS does this; see issuer.tls")
		})
		require.Contains(t, simLog.String(), "first record does not look like a TLS handshake")
	})

	t.Run("TLS switch, plaintext issuer", func(t *testing.T) {
		var logs syncBuffer
		iss := demoIssuer(t, nil, "127.0.0.1:0")
		s := switchtest.Start(t, switchtest.Options{Log: &logs, Edit: issuerAt(iss.Addr, fmt.Sprintf("{mode: tls, ca: %q}", p.path("issuer-ca.pem")))})
		require.False(t, s.Link.Up())
		d := s.SignedOn("10000001")
		start := time.Now()
		require.Equal(t, rc.IssuerDown, bought(t, d, 100))
		require.Less(t, time.Since(start), 5*time.Second, "the terminal was left waiting on a link that is down")
		eventually(t, 10*time.Second, "the switch logs the plaintext issuer", func() bool {
			return strings.Contains(logs.String(), "the issuer closed the connection during the TLS handshake: expected a TLS server")
		})
		require.Zero(t, iss.Received()["0800"], "a TLS hello was read as a sign-on")
	})

	t.Run("TLS switch, silent endpoint", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		t.Cleanup(func() { ln.Close() })
		go func() { // accepts, holds every connection open, never writes
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				t.Cleanup(func() { c.Close() })
			}
		}()
		var logs syncBuffer
		s := switchtest.Start(t, switchtest.Options{Log: &logs, Edit: issuerAt(ln.Addr().String(), fmt.Sprintf("{mode: tls, ca: %q}", p.path("issuer-ca.pem")))})
		require.False(t, s.Link.Up())
		d := s.SignedOn("10000001")
		start := time.Now()
		require.Equal(t, rc.IssuerDown, bought(t, d, 100))
		require.Less(t, time.Since(start), 5*time.Second, "the terminal was left waiting on a link that is down")
		// "attempts":2 is logged only after a slot's first handshake ended: none hangs
		eventually(t, 15*time.Second, "the handshake times out and is retried", func() bool {
			l := logs.String()
			return strings.Contains(l, "no TLS handshake from the issuer within 2s") && strings.Contains(l, `"attempts":2`)
		})
	})
}

// TestSwitchRefusesIssuerCertificate: the issuer presents a certificate of a CA the switch does
// not trust (issuer.tls.ca is another): the switch refuses it, answers 91 and logs what it
// expected and found. The issuer's operator replaces its certificate on disk: the simulator
// serves the new one without a restart and the switch connects.
func TestSwitchRefusesIssuerCertificate(t *testing.T) {
	fastTLSReload(t)
	p := newPKI(t)
	issCert, issKey := p.cert(t, p.otherCA, "issuer", true) // not the issuer CA
	swCert, swKey := p.cert(t, p.switchCA, "switch", false)
	var simLog, logs syncBuffer
	iss := tlsIssuer(t, sim.TLSFiles{Cert: issCert, Key: issKey, ClientCA: p.path("switch-ca.pem")}, &simLog)
	s := switchtest.Start(t, switchtest.Options{Log: &logs, Edit: issuerAt(iss.Addr,
		fmt.Sprintf("{mode: mutual, cert: %q, key: %q, ca: %q}", swCert, swKey, p.path("issuer-ca.pem")))})
	require.False(t, s.Link.Up(), "an issuer certificate of an unknown CA was accepted")
	d := s.SignedOn("10000001")
	require.Equal(t, rc.IssuerDown, bought(t, d, 100))
	eventually(t, 10*time.Second, "the switch logs why", func() bool {
		return strings.Contains(logs.String(), `issuer certificate signed by unknown authority: expected a certificate chaining to a CA of issuer.tls.ca, found one issued by \"CN=somebody else's CA\"`)
	})
	require.Zero(t, iss.Received()["0800"], "the switch signed on to an issuer it does not trust")

	p.cert(t, p.issuerCA, "issuer", true) // the simulator's files, replaced in place
	eventually(t, 15*time.Second, "the link comes up with the issuer's new certificate", s.Link.Up)
	require.Equal(t, rc.Approved, bought(t, d, 100))
}
