package issuerlink

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"
)

// handshakeError is a TLS handshake that failed (the TCP connection was made).
type handshakeError struct{ err error }

func (e *handshakeError) Error() string { return "TLS handshake: " + e.err.Error() }
func (e *handshakeError) Unwrap() error { return e.err }

// handshake runs the client side of TLS on nc under ctx (the dial's timeout): the server's
// certificate is verified for cfg.ServerName, or the endpoint's host when that is empty. When
// the issuer asks for a client certificate, the link's is sent even if its CA is not among those
// the issuer lists (Go would send none): the issuer judges it, and its alert says why it refused
// ("unknown certificate authority", "expired certificate") rather than only "certificate required".
func handshake(ctx context.Context, nc net.Conn, cfg *tls.Config, addr string) (net.Conn, error) {
	cfg = cfg.Clone()
	if cfg.ServerName == "" {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			host = addr
		}
		cfg.ServerName = host
	}
	if certs := cfg.Certificates; len(certs) > 0 && cfg.GetClientCertificate == nil {
		cfg.GetClientCertificate = func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
			for i := range certs {
				if cri.SupportsCertificate(&certs[i]) == nil {
					return &certs[i], nil
				}
			}
			return &certs[0], nil
		}
	}
	tc := tls.Client(nc, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		nc.Close()
		return nil, &handshakeError{err}
	}
	return tc, nil
}

// explainConnect says in words why a connection attempt (dial, TLS handshake, sign-on) failed
// when the cause is TLS: one side speaking it and the other not, a certificate refused by
// either side, a handshake that did not finish within the dial timeout. Other errors are
// returned as they are. tlsOn: the link dials with TLS.
func explainConnect(err error, tlsOn bool, dialTimeout time.Duration) error {
	if err == nil {
		return nil
	}
	var (
		hs        *handshakeError
		unknownCA x509.UnknownAuthorityError
		invalid   x509.CertificateInvalidError
		host      x509.HostnameError
		record    tls.RecordHeaderError
		op        *net.OpError
	)
	closed := errors.Is(err, errClosedByIssuer) || errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
	switch {
	case !tlsOn:
		if closed {
			return fmt.Errorf("%w (the issuer closed a plaintext connection before answering the sign-on: an issuer that expects TLS does this; see issuer.tls)", err)
		}
	case errors.As(err, &unknownCA):
		by := "?"
		if unknownCA.Cert != nil {
			by = unknownCA.Cert.Issuer.String()
		}
		return fmt.Errorf("issuer certificate signed by unknown authority: expected a certificate chaining to a CA of issuer.tls.ca, found one issued by %q (%w)", by, err)
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return fmt.Errorf("issuer certificate expired or not yet valid (%w)", err)
	case errors.As(err, &host):
		return fmt.Errorf("issuer certificate is not for %q (the endpoint's host, or issuer.tls.server_name) (%w)", host.Host, err)
	case errors.As(err, &record):
		return fmt.Errorf("the issuer does not speak TLS: expected a TLS handshake, found other bytes (does it listen in plain TCP?) (%w)", err)
	case errors.As(err, &op) && op.Op == "remote error":
		return fmt.Errorf("the issuer refused the TLS session (%v): expected it to accept the switch's certificate issuer.tls.cert (signed by a CA it trusts, valid; mode mutual when it asks for one) (%w)", op.Err, err)
	case errors.As(err, &hs) && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)):
		return fmt.Errorf("no TLS handshake from the issuer within %s: expected a TLS server at the endpoint (an issuer in plain TCP waits for a frame and says nothing) (%w)", dialTimeout, err)
	case closed && errors.As(err, &hs):
		return fmt.Errorf("the issuer closed the connection during the TLS handshake: expected a TLS server (an issuer in plain TCP closes on a TLS hello, as does one refusing the TLS version) (%w)", err)
	case closed:
		return fmt.Errorf("the issuer closed the TLS connection before answering the sign-on (it may refuse the switch's certificate) (%w)", err)
	}
	return err
}
