package sim

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoudan/shoudan/spec/upstream"
	"github.com/shoudan/shoudan/switch/netserve"
	"github.com/shoudan/shoudan/terminals"
	"gopkg.in/yaml.v3"
)

// Faults are injected on demand (config or POST /faults).
type Faults struct {
	LatencyMinMS int     `json:"latency_min_ms" yaml:"latency_min_ms"`
	LatencyMaxMS int     `json:"latency_max_ms" yaml:"latency_max_ms"`
	SwallowRate  float64 `json:"swallow_rate" yaml:"swallow_rate"` // share of requests processed but never answered
	LateRate     float64 `json:"late_rate" yaml:"late_rate"`       // share answered after LateMS
	LateMS       int     `json:"late_ms" yaml:"late_ms"`
	DropRate     float64 `json:"drop_rate" yaml:"drop_rate"` // share that closes the connection
	// SwallowNext processes the next N financial requests (not reversals) without answering them:
	// deterministic tests.
	SwallowNext int `json:"swallow_next" yaml:"swallow_next"`
	// DownReversals leaves reversals unanswered while true (an issuer that is "down" for them).
	DownReversals bool `json:"down_reversals" yaml:"down_reversals"`
}

// Config is the simulator's YAML config.
type Config struct {
	Listen  string `yaml:"listen"`
	Control string `yaml:"control"`
	ZoneKey string `yaml:"zone_key"`
	// ZMK is the zone master key (AES, 32 or 64 hex digits) key changes arrive under; "" =
	// key changes are refused.
	ZMK   string `yaml:"zmk"`
	Cards []struct {
		PAN     string `yaml:"pan"`
		PIN     string `yaml:"pin"`
		Expiry  string `yaml:"expiry"`
		Status  string `yaml:"status"`
		Balance string `yaml:"balance"`
	} `yaml:"cards"`
	Limits struct {
		Institution map[string]string `yaml:"institution"`
		MCC         map[string]string `yaml:"mcc"`
		Merchant    map[string]string `yaml:"merchant"`
	} `yaml:"limits"`
	Faults Faults `yaml:"faults"`
	// LedgerDir keeps the issuer's books across restarts ("" = in memory only; serve uses
	// <data_dir>/issuer-ledger, `shoudan issuer FILE` <FILE's folder>/issuer-ledger unless set;
	// "none" = in memory). Retention and MaxAuths bound what it remembers.
	LedgerDir string        `yaml:"ledger_dir"`
	Retention time.Duration `yaml:"retention"`
	MaxAuths  int           `yaml:"max_auths"`
	// TLS makes the ISO 8583 listener speak TLS (`shoudan issuer FILE`; the switch's in-process
	// simulator stays plain TCP on loopback).
	TLS TLSFiles `yaml:"tls"`
}

// TLSFiles are the simulator listener's TLS files (PEM), reloaded when they change.
type TLSFiles struct {
	Cert string `yaml:"cert"` // the issuer's certificate chain
	Key  string `yaml:"key"`  // its private key
	// ClientCA: mutual TLS, every client (the switch) presents a certificate this bundle signed.
	ClientCA string `yaml:"client_ca"`
}

// LoadConfig reads and checks a simulator config file.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true) // a misspelt key is an error, not silently nothing (docs/issuer.md)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: %w (the format: docs/issuer.md)", path, err)
	}
	return &c, nil
}

// Build turns a config into an issuer.
func (c *Config) Build() (*Issuer, error) {
	zk, err := hex.DecodeString(c.ZoneKey)
	if err != nil || (len(zk) != 16 && len(zk) != 24) {
		// the same rule as the switch's issuer.zone_key: a single-length DES key is refused
		return nil, fmt.Errorf("zone_key: expected 32 or 48 hex digits (a double- or triple-length key), found %d characters", len(c.ZoneKey))
	}
	var zmk []byte
	if c.ZMK != "" {
		zmk, err = hex.DecodeString(c.ZMK)
		if err != nil || (len(zmk) != 16 && len(zmk) != 32) {
			return nil, fmt.Errorf("zmk: expected 32 or 64 hex digits (an AES-128 or AES-256 key), found %d characters", len(c.ZMK))
		}
	}
	var cards []Card
	for i, cc := range c.Cards {
		bal, err := terminals.ParseAmount(cc.Balance)
		if err != nil {
			return nil, fmt.Errorf("cards[%d].balance: %w", i, err)
		}
		st := cc.Status
		if st == "" {
			st = "active"
		}
		cards = append(cards, Card{PAN: cc.PAN, PIN: cc.PIN, Expiry: cc.Expiry, Status: st, Balance: bal})
	}
	lim := Limits{Institution: map[string]int64{}, MCC: map[string]int64{}, Merchant: map[string]int64{}}
	for src, dst := range map[*map[string]string]map[string]int64{&c.Limits.Institution: lim.Institution, &c.Limits.MCC: lim.MCC, &c.Limits.Merchant: lim.Merchant} {
		for k, v := range *src {
			n, err := terminals.ParseAmount(v)
			if err != nil {
				return nil, fmt.Errorf("limits.%s: %w", k, err)
			}
			dst[k] = n
		}
	}
	if c.Retention < 0 || c.MaxAuths < 0 {
		return nil, fmt.Errorf("retention, max_auths: expected 0 (the defaults %s, %d) or more", DefaultRetention, DefaultMaxAuths)
	}
	led := NewLedger(cards)
	led.Retention, led.MaxAuths = c.Retention, c.MaxAuths
	if c.LedgerDir != "" && c.LedgerDir != "none" {
		if err := led.Persist(c.LedgerDir, zk); err != nil {
			return nil, err
		}
	}
	return &Issuer{Ledger: led, Limits: lim, ZoneKey: zk, ZMK: zmk, Now: time.Now}, nil
}

// Server is the running simulator.
type Server struct {
	Issuer *Issuer
	Log    *slog.Logger
	faults atomic.Pointer[Faults]
	swMu   sync.Mutex
	ln     net.Listener
	conns  sync.Map
	http   *http.Server
	Addr   string
	Ctl    string
	// Received counts requests by MTI (for tests and the control endpoint).
	received sync.Map
	tls      *tls.Config // nil: plain TCP
	tlsFiles *netserve.Reloader
}

// UseTLS makes the ISO 8583 listener speak TLS 1.2+ with f's files, mutual when f.ClientCA is set
// (a client without a certificate of that CA is refused at the handshake). The files are
// reloaded when they change. Call it before Start; empty files: plain TCP.
func (s *Server) UseTLS(f TLSFiles) error {
	if f == (TLSFiles{}) {
		return nil
	}
	if f.Cert == "" || f.Key == "" {
		return fmt.Errorf("tls: expected cert and key (the issuer's certificate and its key), found cert %q key %q", f.Cert, f.Key)
	}
	r, err := netserve.NewServerTLS(netserve.TLSFiles{Cert: f.Cert, Key: f.Key, ClientCA: f.ClientCA}, s.Log)
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	s.tlsFiles, s.tls = r, r.Server()
	return nil
}

// NewServer wraps an issuer with faults.
func NewServer(is *Issuer, f Faults, log *slog.Logger) *Server {
	s := &Server{Issuer: is, Log: log}
	s.faults.Store(&f)
	return s
}

// Start listens on addr (ISO 8583) and ctl (HTTP control).
func (s *Server) Start(addr, ctl string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	s.ln, s.Addr = ln, ln.Addr().String()
	go netserve.Accept(s.ln, func(nc net.Conn) { go s.serve(nc) })
	if ctl != "" {
		cl, err := net.Listen("tcp", ctl)
		if err != nil {
			return err
		}
		s.Ctl = cl.Addr().String()
		mux := http.NewServeMux()
		mux.HandleFunc("GET /ledger", s.ledgerHandler)
		mux.HandleFunc("GET /faults", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, s.faults.Load()) })
		mux.HandleFunc("POST /faults", func(w http.ResponseWriter, r *http.Request) {
			var f Faults
			if err := json.NewDecoder(r.Body).Decode(&f); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			s.SetFaults(f)
			writeJSON(w, f)
		})
		mux.HandleFunc("GET /clearing", s.clearingHandler)
		mux.HandleFunc("GET /received", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, s.Received()) })
		s.http = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go s.http.Serve(cl)
	}
	return nil
}

// SetFaults replaces the fault settings.
func (s *Server) SetFaults(f Faults) { s.faults.Store(&f) }

// Received is the count of requests by MTI.
func (s *Server) Received() map[string]int64 {
	out := map[string]int64{}
	s.received.Range(func(k, v any) bool { out[k.(string)] = v.(*atomic.Int64).Load(); return true })
	return out
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// serve reads requests until the connection ends; each is handled on its own goroutine (so that
// latency faults delay only their own answer), answers are written whole, one at a time, each
// with a write deadline.
func (s *Server) serve(raw net.Conn) {
	s.conns.Store(raw, struct{}{})
	defer func() {
		s.conns.Delete(raw)
		raw.Close()
	}()
	nc := raw
	if s.tls != nil {
		tc := tls.Server(raw, s.tls)
		_ = raw.SetDeadline(time.Now().Add(10 * time.Second)) // a client that never finishes is dropped
		if err := tc.Handshake(); err != nil {
			s.Log.Warn("simulated issuer: TLS handshake failed, connection closed", "remote", raw.RemoteAddr().String(), "err", err.Error())
			return
		}
		_ = raw.SetDeadline(time.Time{})
		nc = tc
	}
	w := &writer{conn: netserve.WriteDeadline(nc, 5*time.Second)}
	r := bufio.NewReaderSize(nc, 4096)
	for {
		b, err := upstream.ReadFrame(r)
		if err != nil {
			return
		}
		req, err := upstream.Unmarshal(b)
		if err != nil {
			s.Log.Info("undecodable upstream frame", "err", err.Error())
			continue
		}
		go s.handle(nc, w, req)
	}
}

// writer writes whole frames, one at a time.
type writer struct {
	mu   sync.Mutex
	conn net.Conn
}

func (w *writer) write(b []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, err := w.conn.Write(b); err != nil {
		w.conn.Close()
	}
}

func (s *Server) count(mti string) {
	v, _ := s.received.LoadOrStore(mti, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
}

func (s *Server) handle(nc net.Conn, w *writer, r *upstream.Message) {
	req := *r
	s.count(req.MTI)
	f := s.faults.Load()
	reversal := req.MTI == "0420" || req.MTI == "0421"
	if reversal && f.DownReversals {
		return
	}
	if f.DropRate > 0 && rand.Float64() < f.DropRate {
		nc.Close()
		return
	}
	resp := s.Issuer.Handle(&req)
	// a swallowed request was processed (funds held) but its answer is lost: the worst case for
	// the acquirer, which must reverse it
	if !reversal && req.MTI[:2] != "08" && s.takeSwallow() {
		s.Log.Info("swallowing the answer", "mti", req.MTI, "trace", req.Trace, "code", resp.RespCode)
		return
	}
	if f.SwallowRate > 0 && rand.Float64() < f.SwallowRate {
		return
	}
	delay := time.Duration(0)
	if f.LatencyMaxMS > 0 {
		delay = time.Duration(f.LatencyMinMS+rand.IntN(max(1, f.LatencyMaxMS-f.LatencyMinMS+1))) * time.Millisecond
	}
	if f.LateRate > 0 && rand.Float64() < f.LateRate {
		delay = time.Duration(f.LateMS) * time.Millisecond
	}
	if delay > 0 {
		time.Sleep(delay)
	}
	out, err := upstream.Frame(resp)
	if err != nil {
		s.Log.Error("answer does not encode: not sent", "mti", resp.MTI, "trace", resp.Trace, "err", err.Error())
		return
	}
	w.write(out)
}

func (s *Server) takeSwallow() bool {
	s.swMu.Lock()
	defer s.swMu.Unlock()
	f := s.faults.Load()
	if f.SwallowNext <= 0 {
		return false
	}
	nf := *f
	nf.SwallowNext--
	s.faults.Store(&nf)
	return true
}

// Close stops listening and closes every connection.
func (s *Server) Close(ctx context.Context) {
	if s.ln != nil {
		s.ln.Close()
	}
	if s.http != nil {
		s.http.Shutdown(ctx)
	}
	s.conns.Range(func(k, _ any) bool { k.(net.Conn).Close(); return true })
	if s.tlsFiles != nil {
		s.tlsFiles.Close()
	}
	if err := s.Issuer.Ledger.Close(); err != nil && s.Log != nil {
		s.Log.Warn("simulated issuer: ledger not saved", "err", err.Error())
	}
}
