package netserve

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// TLSFiles name the PEM files of a TLS endpoint.
type TLSFiles struct {
	Cert, Key string // certificate chain and private key
	ClientCA  string // CA bundle client certificates must chain to ("" = no client certificates)
	ServerCA  string // for a client: CA bundle the server must chain to ("" = the system roots)
}

// Reloader serves a TLS config built from files and rebuilds it when any of them changes
// (checked every PollEvery). Connections already open keep the session they negotiated; new
// handshakes get the new certificate. A change that does not load (a half-copied file, a key
// that does not match) is logged and the previous config keeps serving.
type Reloader struct {
	files  TLSFiles
	client bool
	log    *slog.Logger
	cur    atomic.Pointer[tls.Config]
	stamp  string
	stop   chan struct{}
	once   sync.Once
}

// PollEvery is how often the files are checked for changes.
var PollEvery = time.Second

// NewServerTLS loads a server's files (mutual TLS when ClientCA is set).
func NewServerTLS(f TLSFiles, log *slog.Logger) (*Reloader, error) { return newReloader(f, false, log) }

// NewClientTLS loads a client's files (a client certificate when Cert is set).
func NewClientTLS(f TLSFiles, log *slog.Logger) (*Reloader, error) { return newReloader(f, true, log) }

func newReloader(f TLSFiles, client bool, log *slog.Logger) (*Reloader, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Reloader{files: f, client: client, log: log, stop: make(chan struct{})}
	cfg, stamp, err := r.load()
	if err != nil {
		return nil, err
	}
	r.cur.Store(cfg)
	r.stamp = stamp
	go r.watch()
	return r, nil
}

// Server is a tls.Config for a listener: every handshake uses the current files.
func (r *Reloader) Server() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return r.cur.Load(), nil }}
}

// Client is the current tls.Config for dialing (take it again for each dial to see reloads).
func (r *Reloader) Client() *tls.Config { return r.cur.Load().Clone() }

// Close stops watching the files.
func (r *Reloader) Close() { r.once.Do(func() { close(r.stop) }) }

func (r *Reloader) watch() {
	t := time.NewTicker(PollEvery)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
		}
		s := r.stampNow()
		if s == r.stamp {
			continue
		}
		cfg, stamp, err := r.load()
		if err != nil {
			r.log.Error("TLS files changed but do not load: the previous certificate keeps serving", "cert", r.files.Cert, "err", err.Error())
			r.stamp = s // retried at the next change
			continue
		}
		r.cur.Store(cfg)
		r.stamp = stamp
		r.log.Info("TLS certificate reloaded", "cert", r.files.Cert, "not_after", notAfter(cfg))
	}
}

func notAfter(c *tls.Config) string {
	if len(c.Certificates) == 0 || c.Certificates[0].Leaf == nil {
		return ""
	}
	return c.Certificates[0].Leaf.NotAfter.UTC().Format(time.RFC3339)
}

func (r *Reloader) stampNow() string {
	s := ""
	for _, p := range []string{r.files.Cert, r.files.Key, r.files.ClientCA, r.files.ServerCA} {
		if p == "" {
			continue
		}
		if st, err := os.Stat(p); err == nil {
			s += fmt.Sprintf("%s:%d:%d;", p, st.Size(), st.ModTime().UnixNano())
		} else {
			s += p + ":missing;"
		}
	}
	return s
}

func (r *Reloader) load() (*tls.Config, string, error) {
	stamp := r.stampNow()
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if r.files.Cert != "" || r.files.Key != "" {
		kp, err := tls.LoadX509KeyPair(r.files.Cert, r.files.Key)
		if err != nil {
			return nil, "", fmt.Errorf("certificate %s with key %s: %w", r.files.Cert, r.files.Key, err)
		}
		if kp.Leaf == nil && len(kp.Certificate) > 0 {
			kp.Leaf, _ = x509.ParseCertificate(kp.Certificate[0])
		}
		cfg.Certificates = []tls.Certificate{kp}
	} else if !r.client {
		return nil, "", errors.New("TLS: expected a certificate and its key")
	}
	pool := func(path string) (*x509.CertPool, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		p := x509.NewCertPool()
		if !p.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("%s: no PEM certificate found", path)
		}
		return p, nil
	}
	if r.files.ClientCA != "" && !r.client {
		p, err := pool(r.files.ClientCA)
		if err != nil {
			return nil, "", fmt.Errorf("client CA: %w", err)
		}
		cfg.ClientCAs, cfg.ClientAuth = p, tls.RequireAndVerifyClientCert
	}
	if r.files.ServerCA != "" && r.client {
		p, err := pool(r.files.ServerCA)
		if err != nil {
			return nil, "", fmt.Errorf("server CA: %w", err)
		}
		cfg.RootCAs = p
	}
	return cfg, stamp, nil
}
