package posswitch_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	rc "github.com/shoudan/shoudan/responsecodes"
	"github.com/shoudan/shoudan/switch/netserve"
	"github.com/shoudan/shoudan/switch/switchtest"
	"github.com/shoudan/shoudan/terminals/device"
	"github.com/stretchr/testify/require"
)

// testCA is a certificate authority for the TLS tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

var serial struct {
	sync.Mutex
	n int64
}

func nextSerial() *big.Int {
	serial.Lock()
	defer serial.Unlock()
	serial.n++
	return big.NewInt(serial.n)
}

func newCA(t *testing.T, name string) *testCA {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tpl := &x509.Certificate{SerialNumber: nextSerial(), Subject: pkix.Name{CommonName: name}, NotBefore: time.Now().Add(-72 * time.Hour),
		NotAfter: time.Now().Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	require.NoError(t, err)
	c, _ := x509.ParseCertificate(der)
	return &testCA{cert: c, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a leaf certificate and key (PEM) valid from notBefore to notAfter.
func (ca *testCA) issue(t *testing.T, cn string, server bool, notBefore, notAfter time.Time) (certPEM, keyPEM []byte, serialNo *big.Int) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tpl := &x509.Certificate{SerialNumber: nextSerial(), Subject: pkix.Name{CommonName: cn}, NotBefore: notBefore, NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if server {
		tpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, ca.cert, &key.PublicKey, ca.key)
	require.NoError(t, err)
	kd, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}), tpl.SerialNumber
}

func (ca *testCA) clientTLS(t *testing.T, serverCA *testCA, cn string) *tls.Config {
	c, k, _ := ca.issue(t, cn, false, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	kp, err := tls.X509KeyPair(c, k)
	require.NoError(t, err)
	roots := x509.NewCertPool()
	roots.AddCert(serverCA.cert)
	return &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{kp}, MinVersion: tls.VersionTLS12}
}

// writeAtomic replaces a file the way an operator's deploy does (write aside, rename).
func writeAtomic(t *testing.T, path string, b []byte) {
	require.NoError(t, os.WriteFile(path+".new", b, 0o600))
	require.NoError(t, os.Rename(path+".new", path))
}

// Terminals over mutual TLS: a terminal with a certificate of the terminal CA signs on and
// buys; one whose certificate another CA signed, one without a certificate, and one speaking
// plaintext are refused at the handshake, each counted and logged, and nothing of theirs reaches
// the switch. The server certificate expires; replaced on disk, new terminals get the new one
// while the terminal connected under the old one keeps its connection and goes on buying.
func TestTerminalsOverTLS(t *testing.T) {
	old := netserve.PollEvery
	netserve.PollEvery = 50 * time.Millisecond
	t.Cleanup(func() { netserve.PollEvery = old })
	dir := t.TempDir()
	serverCA, terminalCA, otherCA := newCA(t, "shoudan server CA"), newCA(t, "shoudan terminal CA"), newCA(t, "somebody else's CA")
	// the server certificate in place at start has already expired (an hour ago)
	expiredCert, expiredKey, _ := serverCA.issue(t, "switch", true, time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour))
	certFile, keyFile, caFile := filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key"), filepath.Join(dir, "terminals-ca.pem")
	writeAtomic(t, certFile, expiredCert)
	writeAtomic(t, keyFile, expiredKey)
	writeAtomic(t, caFile, terminalCA.pem)
	var logs syncBuffer
	s := switchtest.Start(t, switchtest.Options{Log: &logs, Edit: func(y string) string {
		return strings.Replace(y, "    env: production\n", "    env: production\n    tls: {mode: mutual, cert: "+certFile+", key: "+keyFile+", client_ca: "+caFile+"}\n", 1)
	}})
	termTLS := terminalCA.clientTLS(t, serverCA, "10000001")

	// a terminal whose clock still trusts the old certificate (it connected before the expiry)
	early := termTLS.Clone()
	early.Time = func() time.Time { return time.Now().Add(-2 * time.Hour) }
	before, err := s.DialTerminal("10000001", early)
	require.NoError(t, err)
	r, err := before.SignOn()
	require.Equal(t, rc.Approved, code(t, r, err))
	require.Equal(t, rc.Approved, bought(t, before, 100))

	// now: the expired certificate is refused by a new terminal
	_, err = s.DialTerminal("10000007", termTLS)
	require.ErrorContains(t, err, "expired")

	// the operator puts a new certificate in place; the listener picks it up without a restart
	freshCert, freshKey, freshSerial := serverCA.issue(t, "switch", true, time.Now().Add(-time.Minute), time.Now().Add(24*time.Hour))
	writeAtomic(t, keyFile, freshKey)
	writeAtomic(t, certFile, freshCert)
	var after *device.Terminal
	require.Eventually(t, func() bool {
		d, err := s.DialTerminal("10000007", termTLS)
		if err == nil {
			after = d
		}
		return err == nil
	}, 10*time.Second, 50*time.Millisecond, "the replaced certificate was not picked up")
	require.Equal(t, 0, after.ConnState().PeerCertificates[0].SerialNumber.Cmp(freshSerial), "served the old certificate")
	r, err = after.SignOn()
	require.Equal(t, rc.Approved, code(t, r, err))
	require.Equal(t, rc.Approved, bought(t, after, 100))
	// the terminal connected before the change was not dropped: same connection, still buying
	require.Equal(t, rc.Approved, bought(t, before, 200))

	// another CA's certificate, no certificate, plaintext: refused at the handshake
	refused := func(tc *tls.Config, what string) {
		d, err := s.DialTerminal("10000003", tc)
		if err == nil { // TLS 1.3: the server's refusal arrives after the client's side of the handshake
			_, err = d.SignOn()
		}
		require.Error(t, err, what)
	}
	refused(otherCA.clientTLS(t, serverCA, "10000003"), "a certificate of another CA was accepted")
	noCert := termTLS.Clone()
	noCert.Certificates = nil
	refused(noCert, "a terminal without a certificate was served")
	plain, err := s.DialTerminal("10000003", nil)
	require.NoError(t, err) // TCP connects
	start := time.Now()
	_, err = plain.SignOn()
	require.Error(t, err, "plaintext on a TLS listener was answered")
	require.Less(t, time.Since(start), 5*time.Second, "a plaintext terminal was left hanging instead of being closed")
	require.Eventually(t, func() bool {
		return strings.Count(logs.String(), "TLS handshake failed") >= 3
	}, 5*time.Second, 20*time.Millisecond, "refused handshakes are logged")
	require.Contains(t, logs.String(), "first record does not look like a TLS handshake")
	require.NotContains(t, logs.String(), `"tid":"10000003"`, "a refused terminal reached the switch")
	// TLS 1.1 is refused
	old11 := termTLS.Clone()
	old11.MaxVersion = tls.VersionTLS11
	old11.MinVersion = tls.VersionTLS10
	refused(old11, "TLS 1.1 was accepted")
}

func bought(t *testing.T, d *device.Terminal, amount int64) string {
	t.Helper()
	r, err := d.Purchase(good, amount)
	return code(t, r, err)
}
