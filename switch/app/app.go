// Package app assembles a running switch from its config: the journal (a private PostgreSQL when
// no URL is configured), the issuer link (to the simulated issuer when no address is configured),
// store-and-forward, crash recovery, the terminal listeners, the admin HTTP port and the config
// watcher. `shoudan serve` and the end-to-end tests start exactly this.
package app

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"reflect"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/jackc/pgx/v5"
	"github.com/shoudan/shoudan/issuerlink"
	"github.com/shoudan/shoudan/issuerlink/sim"
	"github.com/shoudan/shoudan/spec"
	"github.com/shoudan/shoudan/spec/keys"
	"github.com/shoudan/shoudan/spec/upstream"
	posswitch "github.com/shoudan/shoudan/switch"
	"github.com/shoudan/shoudan/switch/backoffice"
	"github.com/shoudan/shoudan/switch/console"
	"github.com/shoudan/shoudan/switch/journal"
	"github.com/shoudan/shoudan/switch/journal/pginstance"
	"github.com/shoudan/shoudan/switch/metrics"
	"github.com/shoudan/shoudan/switch/netserve"
	"github.com/shoudan/shoudan/switch/refunds"
	"github.com/shoudan/shoudan/switch/settlement"
	"github.com/shoudan/shoudan/terminals"
	"github.com/shoudan/shoudan/terminals/registrydb"
	"github.com/spf13/viper"
)

// App is a running switch.
type App struct {
	Config *Config
	// Registry is this node's snapshot of the registry database (RegistryDB), rebuilt whenever
	// a change commits on any node.
	Registry *terminals.Holder
	// RegistryDB is the registry API: the console and the tools change merchants, terminals and
	// rules through it.
	RegistryDB *registrydb.Store
	Journal    *journal.Journal
	Link       *issuerlink.Link
	Switch     *posswitch.Switch
	Security   Security
	Sim        *sim.Server // nil when a real issuer address is configured
	Listeners  []*posswitch.Listener
	Admin      string // bound admin address
	Log        *slog.Logger
	// Settler closes settlement days (automatically after each cut-off when
	// settlement.auto_close), keeps balances and writes statements.
	Settler *settlement.Settler
	// Console is the back office on the web (nil when console.addr is off); Users its users.
	Console *console.Console
	Users   *backoffice.Store
	// DemoUsers were created at this start (the first, with console.demo_users): print them once.
	DemoUsers []backoffice.NewUser
	// Refunds are the back office's refunds and voids, their advices upstream and the
	// notifications to merchant systems; MerchantAPI the bound merchant API address ("" = off).
	Refunds     *refunds.Service
	MerchantAPI string

	pg       *pginstance.Instance
	cancel   context.CancelFunc
	admin    *http.Server
	fwdDone  chan struct{}
	follows  chan struct{}
	watcher  *viper.Viper
	closers  []func()
	reloaded chan error
	lock     *dataDirLock
	debounce *time.Timer
	dmu      sync.Mutex
	closing  sync.Once
	// maintDone is closed when the journal's upkeep (partitions ahead, retention) has stopped
	maintDone chan struct{}
	// started is the file's config when the switch started (before any programmatic
	// override): what an edit of a restart-only key is compared with.
	started *Config

	refundsDone chan struct{}
	apiDone     chan struct{}

	settleCfg  atomic.Pointer[settlement.Config]
	settleDone chan struct{}

	// the zone PIN key in use and the zone master key key changes send it under (zone.go)
	zmu       sync.Mutex
	zone      zoneState
	zbase     string // zoneBase of the issuer.zone_key in use
	zmk       keys.Block
	zmkErr    error // why there is no usable zone master key
	zpkEvery  atomic.Int64
	startedAt time.Time
	zoneDone  chan struct{}
}

// NewLogger builds the configured slog logger writing to w.
func NewLogger(c *Config, w io.Writer) *slog.Logger {
	lvl := slog.LevelInfo
	_ = lvl.UnmarshalText([]byte(c.Log.Level))
	opts := &slog.HandlerOptions{Level: lvl}
	if c.Log.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// OpenJournal opens the configured database, or a private PostgreSQL under the data directory.
func OpenJournal(ctx context.Context, c *Config, log *slog.Logger) (*journal.Journal, *pginstance.Instance, error) {
	return openJournal(ctx, c, log, true)
}

// OpenExistingJournal is OpenJournal for the tools that only read (txn, explain, rejects): it
// creates no data directory, key or cluster, and when there is none it says where it looked.
func OpenExistingJournal(ctx context.Context, c *Config, log *slog.Logger) (*journal.Journal, *pginstance.Instance, error) {
	return openJournal(ctx, c, log, false)
}

func openJournal(ctx context.Context, c *Config, log *slog.Logger, create bool) (*journal.Journal, *pginstance.Instance, error) {
	abs, _ := filepath.Abs(c.DataDir)
	keyPath := filepath.Join(c.DataDir, "journal.key")
	if !create {
		if _, err := os.Stat(keyPath); err != nil {
			return nil, nil, fmt.Errorf("no journal in %s (looked for %s, from data_dir in %s): run this in the folder where `shoudan serve` runs, or point -c at its config",
				abs, filepath.Join(abs, "journal.key"), c.source())
		}
	} else if err := os.MkdirAll(c.DataDir, 0o755); err != nil {
		return nil, nil, c.dataDirError(abs, err)
	}
	key, err := journal.LoadOrCreateKey(keyPath)
	if err != nil {
		return nil, nil, err
	}
	vault, err := journal.NewVault(key)
	if err != nil {
		return nil, nil, err
	}
	url := c.Database.URL
	var in *pginstance.Instance
	if url == "" {
		start := pginstance.Start
		if !create {
			start = pginstance.Open
		}
		if in, err = start(ctx, c.DataDir); err != nil {
			if errors.Is(err, pginstance.ErrNoCluster) {
				return nil, nil, fmt.Errorf("no journal: %w", err)
			}
			return nil, nil, fmt.Errorf("private PostgreSQL: %w", err)
		}
		if in.Moved != "" {
			log.Warn("private PostgreSQL placed outside the data directory", "data", in.Data, "why", in.Moved)
		}
		log.Info("private PostgreSQL ready", "data", in.Data)
		url = in.URL()
	}
	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	j, err := journal.Open(octx, url, vault)
	if err != nil {
		if in != nil {
			_ = in.Stop()
			return nil, nil, fmt.Errorf("private PostgreSQL in %s: cannot open the journal: %v (its log: %s)", in.Data, err, in.LogFile())
		}
		return nil, nil, fmt.Errorf("database.url: cannot open the journal at %s: %v: check the server is running and the URL is right in %s, or leave it empty for a private PostgreSQL",
			RedactURL(url), oneLine(err), c.configRef("database.url"))
	}
	return j, in, nil
}

// Start brings the whole switch up. reg is the config file's registry (Load returned it with
// c): it is imported into the registry database (what the file changed since its last import;
// everything on a first start), and the switch then decides by the database's registry.
// A failure stops whatever was started (nothing is left running, the private PostgreSQL
// included) and is one line: what, where, and the fix.
func Start(ctx context.Context, c *Config, reg *terminals.Registry, log *slog.Logger) (_ *App, err error) {
	a := &App{Config: c, Registry: terminals.NewHolder(reg), Log: log, fwdDone: make(chan struct{}), reloaded: make(chan error, 16), startedAt: time.Now()}
	defer func() { // a, not the result (nil on failure), is what was started
		if err != nil {
			a.Close(context.Background())
		}
	}()
	if a.lock, err = c.lockDataDir(); err != nil {
		return nil, err
	}
	if err = c.checkPorts(); err != nil {
		return nil, err
	}
	if a.Journal, a.pg, err = OpenJournal(ctx, c, log); err != nil {
		return nil, err
	}
	a.RegistryDB = registrydb.New(a.Journal.Pool, a.Journal.Vault)
	a.RegistryDB.Local = a.Registry
	// every registry change (console, CLI, config file import) is in the audit log, written in
	// the change's own transaction
	a.RegistryDB.Audit = func(ctx context.Context, tx pgx.Tx, ch *registrydb.Change) error {
		return backoffice.AuditIn(ctx, tx, ch.Who, backoffice.ActConfigChange, strings.Join(ch.Lines(), "; "))
	}
	if err := a.importConfig(ctx, reg); err != nil {
		log.Error("config: registry sections not imported: the registry database keeps serving", "file", c.Path, "err", err.Error())
	}
	dbReg, err := a.RegistryDB.Load(ctx)
	if err != nil {
		return nil, fmt.Errorf("registry database: %w", err)
	}
	a.Registry.Set(dbReg)
	a.Journal.Stats = func(n int, d time.Duration) {
		metrics.JournalLatency.Observe(d.Seconds())
		metrics.JournalGroup.Observe(float64(n))
	}
	simAddr := ""
	if len(c.Issuer.Addrs) == 0 && len(c.Issuer.Routes) == 0 {
		simCfg := c.Issuer.Sim
		if simCfg.LedgerDir == "" {
			simCfg.LedgerDir = filepath.Join(c.DataDir, "issuer-ledger") // its books survive a restart
		}
		is, err := simCfg.Build()
		if err != nil {
			return nil, fmt.Errorf("issuer.sim: %w", err)
		}
		a.Sim = sim.NewServer(is, c.Issuer.Sim.Faults, log)
		if err := a.Sim.Start(c.Issuer.Sim.Listen, c.Issuer.Sim.Control); err != nil {
			var op *net.OpError
			if errors.As(err, &op) && op.Addr != nil && op.Addr.String() == c.Issuer.Sim.Control {
				return nil, c.addrError("issuer.sim.control", c.Issuer.Sim.Control, err)
			}
			return nil, c.addrError("issuer.sim.listen", c.Issuer.Sim.Listen, err)
		}
		simAddr = a.Sim.Addr
	}
	lc := c.LinkConfig(simAddr)
	lc.Log = log
	// the key a key change brought, sent by every connection after sign-on from the first
	zk, zkOK, err := a.recordedZone(ctx, zoneBase(c))
	if err != nil {
		return nil, err
	}
	if zkOK {
		lc.KeyChange = keyChangeOf(zk)
	}
	var stopTLS func()
	if lc.TLS, stopTLS, err = c.linkTLS(log); err != nil {
		return nil, err
	}
	a.closers = append(a.closers, stopTLS)
	if a.Link, err = issuerlink.New(lc); err != nil {
		return nil, err
	}
	a.Link.Late = func(m *upstream.Message) {
		metrics.LateAnswers.Inc()
		log.Warn("late issuer answer after its timeout: not honoured, the transaction is reversed", "trace", m.Trace, "code", m.RespCode, "pan", spec.MaskPAN(m.PAN))
	}
	if a.Security, err = OpenSecurity(c, a.Journal.Vault, log); err != nil {
		return nil, fmt.Errorf("security module: %w", err)
	}
	a.Switch = &posswitch.Switch{Registry: a.Registry, Journal: a.Journal, Link: a.Link, Security: a.Security, Log: log, Now: time.Now,
		SignOnLimit: posswitch.SignOnLimit{Max: c.SignOn.Max, Window: c.SignOn.Window}}
	if err := a.startKeys(a.Registry.Get()); err != nil {
		return nil, err
	}
	if zkOK {
		if err := a.useZone(zk); err != nil {
			return nil, fmt.Errorf("%w: the zone_key table's newest row for this issuer.zone_key does not load under this security module", err)
		}
	}
	a.Journal.SetRejectLimits(journal.RejectLimits{MaxRows: c.Rejects.MaxRows, MaxAge: c.Rejects.MaxAge})
	a.settleCfg.Store(c.Settlement)
	a.Switch.SettleDate = func(t time.Time) time.Time { return a.settleCfg.Load().Cutoff.Date(t) }
	a.Settler = &settlement.Settler{DB: a.Journal.Pool, Config: c.Settlement, Current: a.settleCfg.Load, Registry: a.Registry.Get, Now: time.Now, Log: log}
	if len(c.Bind) > 0 {
		b := posswitch.Binding{}
		for _, x := range c.Bind {
			b.Add(x.MID, x.TID, x.Ranges...)
		}
		a.Switch.Bind = b.Check
	}
	if n, err := a.Switch.Recover(ctx); err != nil {
		return nil, fmt.Errorf("recovery: %w", err)
	} else if n > 0 {
		log.Warn("recovered transactions left in flight at the issuer: reversals armed", "count", n)
	}
	host, _ := os.Hostname()
	dataDir, _ := filepath.Abs(c.DataDir)
	if err := a.Journal.Serve(ctx, host+":"+dataDir); err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	a.maintDone = make(chan struct{})
	upkeep := journal.Retention{Days: c.Journal.RetentionDays, ArchiveDir: filepath.Join(dataDir, "archive")}
	a.Journal.MaintainOnce(ctx, upkeep, log) // partitions for today and ahead before the first request
	go func() {
		defer close(a.maintDone)
		a.Journal.Maintain(rctx, upkeep, time.Hour, log)
	}()
	fwd := &issuerlink.Forwarder{Link: a.Link, Queue: posswitch.SAFQueue{Journal: a.Journal, Lease: 2*c.Issuer.Timeout + time.Second}, Log: log, Every: 100 * time.Millisecond, MaxBackoff: 30 * time.Second,
		Result: func(acked bool) {
			if acked {
				metrics.SAFDelivered.WithLabelValues("acked").Inc()
			} else {
				metrics.SAFDelivered.WithLabelValues("retry").Inc()
			}
		}}
	go func() { fwd.Run(rctx); close(a.fwdDone) }()
	a.zoneDone = make(chan struct{})
	go func() { defer close(a.zoneDone); a.followZone(rctx) }()
	a.follows = make(chan struct{})
	go func() {
		defer close(a.follows)
		a.RegistryDB.Follow(rctx, a.Registry, log, func(_ *terminals.Registry, err error) {
			if err != nil {
				metrics.ConfigReloads.WithLabelValues("rejected").Inc()
			}
		})
	}()
	a.gauges()
	for i, lc := range c.Listeners {
		var tc *tls.Config
		if lc.TLS.Mode == "tls" || lc.TLS.Mode == "mutual" {
			f := netserve.TLSFiles{Cert: lc.TLS.Cert, Key: lc.TLS.Key}
			if lc.TLS.Mode == "mutual" {
				f.ClientCA = lc.TLS.ClientCA
			}
			r, err := netserve.NewServerTLS(f, log)
			if err != nil {
				return nil, fmt.Errorf("listeners[%d].tls: %w", i, err)
			}
			a.closers = append(a.closers, r.Close)
			tc = r.Server()
		}
		l, err := a.Switch.Listen(posswitch.ListenerConfig{Addr: lc.Addr, Env: terminals.Environment(lc.Env), MaxConns: c.Limits.MaxConns,
			MaxInFlight: c.Limits.MaxInFlight, IdleTimeout: c.Limits.IdleTimeout, WriteTimeout: c.Limits.WriteTimout,
			RequestTimeout: c.Issuer.Timeout + 5*time.Second, Capture: lc.Capture, TLS: tc})
		if err != nil {
			return nil, c.addrError(fmt.Sprintf("listeners[%d].addr", i), lc.Addr, err)
		}
		a.Listeners = append(a.Listeners, l)
	}
	if c.Admin.Addr != "" {
		if err := a.startAdmin(c.Admin.Addr); err != nil {
			return nil, err
		}
	}
	if err := a.startRefunds(rctx); err != nil {
		return nil, err
	}
	if c.Settlement.AutoClose {
		a.settleDone = make(chan struct{})
		go func() { defer close(a.settleDone); a.Settler.Schedule(rctx, a.afterClose) }()
	}
	if err := a.startConsole(ctx); err != nil {
		return nil, err
	}
	return a, nil
}

// startConsole serves the back office on console.addr, creating the demo users at the first
// start when console.demo_users asks for them.
func (a *App) startConsole(ctx context.Context) error {
	c := a.Config.Console
	a.Users = backoffice.NewStore(a.Journal.Pool)
	a.Users.SessionIdle, a.Users.SessionMax = c.SessionIdle, c.SessionMax
	if c.Addr == "off" {
		return nil
	}
	if c.DemoUsers {
		us, err := a.Users.DemoUsers(ctx)
		if err != nil {
			return fmt.Errorf("console demo users: %w", err)
		}
		a.DemoUsers = us
	}
	con, err := console.New(a.Journal, a.Users, a.Registry, a.Log)
	if err != nil {
		return err
	}
	con.Edit = a.RegistryDB
	con.Refunds = a.Refunds
	con.Settler = a.Settler
	if err := con.Start(c.Addr); err != nil {
		return fmt.Errorf("%w (set console.addr to a free address, or off)", err)
	}
	a.Console = con
	return nil
}

// startRefunds starts the back office's refunds: the forwarder of their advices, the
// notifier, and the merchant API listener when merchant_api.addr is set.
func (a *App) startRefunds(ctx context.Context) error {
	c := a.Config
	a.Refunds = refunds.New(a.Switch, a.Log)
	a.Refunds.Lease = 2*c.Issuer.Timeout + time.Second
	a.Refunds.Notify.Backoff, a.Refunds.Notify.MaxBackoff = c.Notify.Backoff, c.Notify.MaxBackoff
	a.Refunds.Notify.Expiry, a.Refunds.Notify.Timeout = c.Notify.Expiry, c.Notify.Timeout
	a.Refunds.Notify.Keep = time.Duration(c.Notify.KeepDays) * 24 * time.Hour
	a.refundsDone = make(chan struct{})
	go func() { defer close(a.refundsDone); a.Refunds.Run(ctx) }()
	if c.MerchantAPI.Addr == "" || c.MerchantAPI.Addr == "off" {
		return nil
	}
	ln, err := net.Listen("tcp", c.MerchantAPI.Addr)
	if err != nil {
		return c.addrError("merchant_api.addr", c.MerchantAPI.Addr, err)
	}
	a.MerchantAPI = ln.Addr().String()
	api := &refunds.API{Svc: a.Refunds, Window: c.MerchantAPI.Window, Log: a.Log}
	a.apiDone = make(chan struct{})
	go func() { defer close(a.apiDone); _ = api.Serve(ctx, ln) }()
	a.Log.Info("merchant API listening", "addr", a.MerchantAPI)
	return nil
}

// gauges registers the scrape-time gauges: issuer link state and the reversal queue.
func (a *App) gauges() {
	metrics.GaugeFunc("shoudan_registry_version", "Version of the registry database this node decides by (equal on every node once a change has reached them all).", func() float64 {
		return float64(a.Registry.Get().Version)
	})
	metrics.GaugeFunc("shoudan_issuer_link_up", "1 when at least one issuer connection is live.", func() float64 {
		if a.Link.Up() {
			return 1
		}
		return 0
	})
	metrics.GaugeFunc("shoudan_issuer_connections", "Signed-on issuer connections, all routes and endpoints.", func() float64 {
		n := 0
		for _, r := range a.Link.Status() {
			n += r.PrimaryLive + r.SecondaryLive
		}
		return float64(n)
	})
	metrics.GaugeFunc("shoudan_saf_depth", "Reversals waiting for the issuer's acknowledgement.", func() float64 {
		d, _, _ := a.safStats()
		return float64(d)
	})
	metrics.GaugeFunc("shoudan_saf_oldest_seconds", "Age of the oldest reversal waiting.", func() float64 {
		_, o, _ := a.safStats()
		return o.Seconds()
	})
}

func (a *App) safStats() (int, time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return a.Journal.SAFStats(ctx)
}

func (a *App) startAdmin(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return a.Config.addrError("admin.addr", addr, err)
	}
	a.Admin = ln.Addr().String()
	mux := http.NewServeMux()
	mux.Handle("/metrics", metrics.Handler())
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), time.Second)
		defer cancel()
		var problems []string
		if err := a.Journal.Pool.Ping(ctx); err != nil {
			problems = append(problems, "journal: "+err.Error())
		}
		if !a.Link.Up() {
			problems = append(problems, "issuer link: down")
		}
		if len(problems) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			for _, p := range problems {
				fmt.Fprintln(w, p)
			}
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.HandleFunc("/saf", func(w http.ResponseWriter, _ *http.Request) {
		d, o, err := a.safStats()
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, "{\"depth\":%d,\"oldest_seconds\":%.1f}\n", d, o.Seconds())
	})
	mux.HandleFunc("/test-clock", a.testClock)
	mux.HandleFunc("GET /keys/zone", a.zoneHandler)
	mux.HandleFunc("POST /keys/rotate-zpk", a.rotateHandler)
	if a.Config.Admin.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	var h http.Handler = mux
	if f := a.Config.Admin.TokenFile; f != "" {
		tok, err := os.ReadFile(f)
		if err != nil || len(strings.TrimSpace(string(tok))) < 16 {
			ln.Close()
			return fmt.Errorf("admin.token_file: expected a file holding a token of at least 16 characters (%v)", err)
		}
		want := []byte("Bearer " + strings.TrimSpace(string(tok)))
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
				w.Header().Set("WWW-Authenticate", "Bearer")
				http.Error(w, "admin: expected Authorization: Bearer <token of admin.token_file>", http.StatusUnauthorized)
				return
			}
			mux.ServeHTTP(w, r)
		})
	}
	a.admin = &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	if t := a.Config.Admin.TLS; t.Cert != "" {
		r, err := netserve.NewServerTLS(netserve.TLSFiles{Cert: t.Cert, Key: t.Key}, a.Log)
		if err != nil {
			ln.Close()
			return fmt.Errorf("admin.tls: %w", err)
		}
		a.closers = append(a.closers, r.Close)
		a.admin.TLSConfig = r.Server()
		go a.admin.ServeTLS(ln, "", "")
		return nil
	}
	go a.admin.Serve(ln)
	return nil
}

// Watch follows the config file: a valid change swaps in the new registry and rules without
// touching a socket; an invalid one is logged with its line and reason, counted, and the running
// config keeps serving. Settings that need a restart (listeners, database) are reported.
func (a *App) Watch() error {
	if a.Config.Path == "" {
		return errors.New("config watch: the built-in config has no file to watch")
	}
	v := viper.New()
	v.SetConfigFile(a.Config.Path)
	v.OnConfigChange(func(fsnotify.Event) { a.scheduleReload() })
	v.WatchConfig()
	a.watcher = v
	a.started = a.Config
	if src, err := os.ReadFile(a.Config.Path); err == nil {
		if c, _, err := Parse(src); err == nil {
			a.started = c
		}
		a.saveApplied(src)
	}
	return nil
}

// Reloaded delivers the result of each reload (nil when applied): tests wait on it.
func (a *App) Reloaded() <-chan error { return a.reloaded }

// importConfig applies the config file's registry sections to the registry database (see
// registrydb.Store.ImportFile: a file edit is an import of what it changed).
func (a *App) importConfig(ctx context.Context, reg *terminals.Registry) error {
	who := "built-in demo config"
	if a.Config.Path != "" {
		who = "file " + a.Config.Path
	}
	if host, err := os.Hostname(); err == nil {
		who += " on " + host
	}
	ch, err := a.RegistryDB.ImportFile(ctx, who, reg.Spec())
	if err == nil && !ch.Empty() {
		a.Log.Info("config: registry sections imported", "file", a.Config.Path, "version", ch.Version, "changes", ch.Lines())
	}
	return err
}

// reloadDelay lets an editor finish saving (several events, a briefly empty file) before the
// file is read.
const reloadDelay = 150 * time.Millisecond

func (a *App) scheduleReload() {
	a.dmu.Lock()
	defer a.dmu.Unlock()
	if a.debounce == nil {
		a.debounce = time.AfterFunc(reloadDelay, a.reload)
	} else {
		a.debounce.Reset(reloadDelay)
	}
}

// readSettled reads the config file, waiting out a save in progress: an empty file, or one
// that is still changing, is read again (for up to about a second) before it counts.
func readSettled(path string) ([]byte, error) {
	var b []byte
	var err error
	for i := 0; i < 8; i++ {
		if b, err = os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) > 0 {
			time.Sleep(20 * time.Millisecond)
			again, err2 := os.ReadFile(path)
			if err2 == nil && string(again) == string(b) {
				return b, nil
			}
		}
		time.Sleep(125 * time.Millisecond)
	}
	if err == nil && len(strings.TrimSpace(string(b))) == 0 {
		return nil, errors.New("the file is empty")
	}
	return b, err
}

func (a *App) reload() {
	var c *Config
	var reg *terminals.Registry
	src, err := readSettled(a.Config.Path)
	if err == nil {
		c, reg, err = Parse(src)
	}
	if err == nil {
		err = a.checkKeys(c, reg) // before the import: a block of another KEK never reaches the registry
	}
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err = a.importConfig(ctx, reg)
		cancel()
		if err != nil {
			err = fmt.Errorf("%s: import into the registry database refused: %w", a.Config.Path, err)
		}
	}
	if err != nil {
		metrics.ConfigReloads.WithLabelValues("rejected").Inc()
		a.Log.Error("config rejected: the previous config keeps serving", "file", a.Config.Path, "err", err.Error())
	} else {
		a.settleCfg.Store(c.Settlement)
		if a.Sim != nil {
			a.Sim.SetFaults(c.Issuer.Sim.Faults)
		}
		cur := a.Registry.Get()
		metrics.ConfigReloads.WithLabelValues("applied").Inc()
		attrs := []any{"file", a.Config.Path, "registry_version", cur.Version, "merchants", len(cur.Merchants()),
			"terminals", len(cur.Terminals()), "qps_limit", terminals.FormatAmount(cur.Rules.QPSLimit)}
		if keys := restartKeys(a.started, c); len(keys) > 0 {
			attrs = append(attrs, "needs_restart", strings.Join(keys, ", "))
			a.Log.Warn("config applied, except keys that need a restart: the running switch keeps their old values until `serve` is restarted",
				attrs...)
		} else {
			a.Log.Info("config applied", attrs...)
		}
		a.saveApplied(src)
	}
	select {
	case a.reloaded <- err:
	default:
	}
}

// restartKeys lists what changed between the config the switch started with and c among the
// keys that only a restart applies.
func restartKeys(old, c *Config) []string {
	var keys []string
	show := func(key string, was, now any, visible bool) {
		if reflect.DeepEqual(was, now) {
			return
		}
		if visible {
			keys = append(keys, fmt.Sprintf("%s (%v -> %v)", key, was, now))
		} else {
			keys = append(keys, key)
		}
	}
	show("listeners", old.Listeners, c.Listeners, true)
	show("admin.addr", old.Admin.Addr, c.Admin.Addr, true)
	show("console", old.Console, c.Console, true)
	show("log", old.Log, c.Log, true)
	show("database.url", old.Database.URL, c.Database.URL, false)
	show("data_dir", old.DataDir, c.DataDir, true)
	show("limits", old.Limits, c.Limits, true)
	show("issuer.addrs", old.Issuer.Addrs, c.Issuer.Addrs, true)
	show("issuer.timeout", old.Issuer.Timeout, c.Issuer.Timeout, true)
	show("issuer routing (routes, bins, default_route, conns, echo_interval)", fmt.Sprint(old.LinkConfig("")), fmt.Sprint(c.LinkConfig("")), false)
	show("shutdown.drain", old.Shutdown.Drain, c.Shutdown.Drain, true)
	show("issuer.tls (mode, files, server_name; the files' contents reload live)", old.Issuer.TLS, c.Issuer.TLS, true)
	// issuer.zone_key applies live (a ZPK rotation: checkKeys)
	show("hsm", old.HSM, c.HSM, false)
	show("merchant_api", old.MerchantAPI, c.MerchantAPI, true)
	show("notify", old.Notify, c.Notify, true)
	was, now := old.Issuer.Sim, c.Issuer.Sim
	was.Faults, now.Faults = sim.Faults{}, sim.Faults{} // faults apply live
	show("issuer.sim (listen, control, cards, limits)", was, now, false)
	return keys
}

// AppliedSuffix names the copy of the last config the switch applied, next to the config file:
// the tools fall back to it while the file itself is invalid (being edited).
const AppliedSuffix = ".applied"

func (a *App) saveApplied(src []byte) {
	if a.Config.Path == "" {
		return
	}
	tmp := a.Config.Path + AppliedSuffix + ".tmp"
	if err := os.WriteFile(tmp, src, 0o644); err == nil {
		err = os.Rename(tmp, a.Config.Path+AppliedSuffix)
		if err != nil {
			a.Log.Warn("config: cannot keep a copy of the applied config for the tools", "err", err.Error())
		}
	}
}

// Close shuts down in order: stop accepting and let the transactions under way finish, stop
// forwarding, then the issuer link, the simulator, the journal and its private PostgreSQL. The
// drain (shutdown.drain, or ctx when it ends sooner) bounds the waiting: after it everything is
// closed regardless, and what was left unanswered is crash recovery's at the next start, exactly
// as after a SIGKILL. A second Close does nothing.
func (a *App) Close(ctx context.Context) { a.closing.Do(func() { a.close(ctx) }) }

func (a *App) close(ctx context.Context) {
	if a.Config != nil && a.Config.Shutdown.Drain > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, a.Config.Shutdown.Drain)
		defer cancel()
	}
	a.dmu.Lock()
	if a.debounce != nil {
		a.debounce.Stop()
	}
	a.dmu.Unlock()
	var lwg sync.WaitGroup // the listeners drain side by side: one grace period, not one each
	for _, l := range a.Listeners {
		lwg.Go(func() { l.Close(ctx) })
	}
	lwg.Wait()
	if a.cancel != nil {
		a.cancel()
		select { // a delivery under way ends within the issuer timeout
		case <-a.fwdDone:
		case <-ctx.Done():
		}
		if a.follows != nil {
			select {
			case <-a.follows:
			case <-ctx.Done():
			}
		}
		if a.settleDone != nil {
			<-a.settleDone
		}
		if a.refundsDone != nil {
			<-a.refundsDone
		}
		if a.apiDone != nil {
			<-a.apiDone
		}
		if a.zoneDone != nil { // a key change under way ends within the issuer timeout
			select {
			case <-a.zoneDone:
			case <-ctx.Done():
			}
		}
		<-a.maintDone
	}
	if a.admin != nil {
		_ = a.admin.Close()
	}
	if a.Console != nil {
		a.Console.Close()
	}
	if a.Link != nil {
		_ = a.Link.Close(ctx)
	}
	if a.Sim != nil {
		a.Sim.Close(ctx)
	}
	if a.Journal != nil {
		a.Journal.Close()
	}
	if a.Security != nil {
		a.Security.Close()
	}
	for _, f := range a.closers {
		f()
	}
	if a.pg != nil {
		_ = a.pg.Stop()
	}
	a.lock.release()
}

// testClock shows (GET) or sets (POST ?offset=-72h, 0 to reset) the business-clock offset of
// the test environment: QA makes a refund's original on an earlier day with it. It is refused
// when no test listener is configured, and never touches production transactions.
func (a *App) testClock(w http.ResponseWriter, r *http.Request) {
	test := false
	for _, l := range a.Config.Listeners {
		test = test || l.Env == string(terminals.Test)
	}
	if r.Method == http.MethodPost {
		if !test {
			http.Error(w, "test clock: refused: no test listener is configured (production transactions always use the real clock)", http.StatusForbidden)
			return
		}
		d, err := time.ParseDuration(r.URL.Query().Get("offset"))
		if err != nil || d > 0 || d < -400*24*time.Hour {
			http.Error(w, fmt.Sprintf("test clock: offset: expected a duration from -9600h (400 days back) to 0, like -72h, found %q", r.URL.Query().Get("offset")), http.StatusBadRequest)
			return
		}
		a.Switch.TestClockOffset.Store(int64(d))
		a.Log.Warn("test clock: the test environment's business clock moved", "offset", d.String())
	} else if r.Method != http.MethodGet {
		http.Error(w, "GET or POST", http.StatusMethodNotAllowed)
		return
	}
	d := time.Duration(a.Switch.TestClockOffset.Load())
	fmt.Fprintf(w, "test environment business clock: offset %s, now %s\n", d, a.Switch.Now().Add(d).Format("2006-01-02 15:04:05"))
}

// PrivatePostgres is the private PostgreSQL the switch runs (nil with database.url).
func (a *App) PrivatePostgres() *pginstance.Instance { return a.pg }

// oneLine keeps the first line of an error (a server's multi-line detail goes to its log).
func oneLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}

// Addr is the bound address of the first listener of env.
func (a *App) Addr(env terminals.Environment) string {
	for _, l := range a.Listeners {
		if l.Cfg.Env == env {
			return l.Addr()
		}
	}
	return ""
}

// TuneRuntime sets the garbage collector for a switch process, unless GOGC or GOMEMLIMIT say
// otherwise. The live heap of a switch is small (tens of MB even with 10,000 terminals
// connected) and its garbage is short-lived messages, so the default GOGC=100 spent about a
// fifth of the CPU in GC under load (pprof, issue 7); 400 trades some memory for that CPU.
// The memory limit keeps the heap target bounded when a burst of connections arrives.
func TuneRuntime() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(512 << 20)
	}
}
