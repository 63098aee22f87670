package app

import (
	"bytes"
	_ "embed"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/shoudan/shoudan/issuerlink/sim"
	"github.com/shoudan/shoudan/spec/keys"
	"github.com/shoudan/shoudan/switch/settlement"
	"github.com/shoudan/shoudan/terminals"
	"github.com/spf13/viper"
	"gopkg.in/yaml.v3"
)

// Demo is the built-in config: two listeners, a private PostgreSQL, the simulated issuer with its
// test cards, and demo merchants and terminals covering every rule of protocol.md §7. It is
// also the documented example config (switch/app/demo.yaml).
//
//go:embed demo.yaml
var Demo []byte

// Listener is one terminal listener.
type Listener struct {
	Addr string `yaml:"addr"`
	Env  string `yaml:"env"`
	// Capture writes request/response pairs as QA fixtures into this directory (refused on a
	// production listener).
	Capture string `yaml:"capture"`
	// TLS: mode off (default), tls, or mutual (terminals present a certificate signed by
	// client_ca). TLS 1.2 or later; the files are reloaded when they change.
	TLS struct {
		Mode     string `yaml:"mode"`
		Cert     string `yaml:"cert"`
		Key      string `yaml:"key"`
		ClientCA string `yaml:"client_ca"`
	} `yaml:"tls"`
}

// Config is the whole config file. Listeners, database, data_dir, admin, log and issuer are read
// through viper (with SHOUDAN_* overrides); rules, qps_whitelist, merchants and terminals by
// package terminals, which names the line of every error.
type Config struct {
	Listeners []Listener `yaml:"listeners"`
	Database  struct {
		URL string `yaml:"url"`
	} `yaml:"database"`
	DataDir string `yaml:"data_dir"`
	Journal struct {
		// RetentionDays: daily partitions older than this are detached and archived to
		// data_dir/archive (default 400, at least rules.refund_window_days + 30).
		RetentionDays int `yaml:"retention_days"`
	} `yaml:"journal"`
	Admin struct {
		Addr string `yaml:"addr"`
		// Pprof serves /debug/pprof (off unless enabled: profiles show memory).
		Pprof bool `yaml:"pprof"`
		// TLS and TokenFile (a bearer token every request must carry) are required to bind a
		// non-loopback address.
		TLS       TLSFiles `yaml:"tls"`
		TokenFile string   `yaml:"token_file"`
	} `yaml:"admin"`
	Console struct {
		Addr        string        `yaml:"addr"` // default 127.0.0.1:8080; "off": no console
		DemoUsers   bool          `yaml:"demo_users"`
		SessionIdle time.Duration `yaml:"session_idle"`
		SessionMax  time.Duration `yaml:"session_max"`
	} `yaml:"console"`
	Log struct {
		Format string `yaml:"format"` // json or text
		Level  string `yaml:"level"`
	} `yaml:"log"`
	Limits struct {
		MaxConns    int           `yaml:"max_conns"`
		MaxInFlight int           `yaml:"max_in_flight"`
		IdleTimeout time.Duration `yaml:"idle_timeout"`
		WriteTimout time.Duration `yaml:"write_timeout"`
	} `yaml:"limits"`
	Issuer struct {
		// Addrs is the route called default: primary, then an optional secondary.
		Addrs   []string      `yaml:"addrs"`
		Timeout time.Duration `yaml:"timeout"`
		ZoneKey string        `yaml:"zone_key"`
		// ZoneMasterKey is the AES key shared with the issuer that key changes send new zone
		// PIN keys under: a KB1.ZMK block (`shoudan keys import-zmk`), demo (the simulated
		// issuer's zmk) or "" (no key changes: the zone PIN key changes only by a ceremony).
		ZoneMasterKey string `yaml:"zone_master_key"`
		// ZPKRotation changes the zone PIN key over the link this often (0 = only when asked:
		// `shoudan keys rotate-zpk`).
		ZPKRotation time.Duration `yaml:"zpk_rotation"`
		Conns       int           `yaml:"conns"`         // connections per issuer endpoint [4]
		Echo        time.Duration `yaml:"echo_interval"` // echo an idle connection this often [30s]
		// TLS dials every issuer endpoint over TLS (checked with its lines in issuer_config.go).
		TLS IssuerTLS `yaml:"-"`
		// Routes, BINs and DefaultRoute are read with their lines (issuer_config.go).
		Routes       []IssuerRoute     `yaml:"-"`
		BINs         map[string]string `yaml:"-"`
		DefaultRoute string            `yaml:"-"`
		Sim          sim.Config        `yaml:"sim"`
	} `yaml:"issuer"`
	// Unauthenticated frames (docs/security-unauthenticated.md): sign-ons a terminal may make
	// from addresses other than the one it proved its keys from, and the rejects table's bounds.
	SignOn struct {
		Max    int           `yaml:"max_per_window"`
		Window time.Duration `yaml:"window"`
	} `yaml:"signon"`
	Rejects struct {
		MaxRows int64         `yaml:"max_rows"`
		MaxAge  time.Duration `yaml:"max_age"`
	} `yaml:"rejects"`
	// Bind binds terminals to source address ranges: their frames from elsewhere are answered 97.
	Bind []struct {
		MID    string         `yaml:"mid"`
		TID    string         `yaml:"tid"`
		From   []string       `yaml:"from"` // CIDR ranges or single addresses
		Ranges []netip.Prefix `yaml:"-"`
	} `yaml:"bind"`
	Shutdown struct {
		// Drain is how long a stopping switch lets transactions under way finish before it
		// closes regardless (the unanswered are left to crash recovery) [10s].
		Drain time.Duration `yaml:"drain"`
	} `yaml:"shutdown"`

	// MerchantAPI is the merchant API's listener (refunds and queries, signed requests; issue 16):
	// "off" (or "") = not served. Notify shapes notifications to merchant systems' callback URLs.
	MerchantAPI struct {
		Addr   string        `yaml:"addr"`
		Window time.Duration `yaml:"window"` // accepted clock difference of a signed request (5m)
	} `yaml:"merchant_api"`
	Notify struct {
		Backoff    time.Duration `yaml:"backoff"`     // after every URL failed: backoff, 2×, 4× … (15s)
		MaxBackoff time.Duration `yaml:"max_backoff"` // (1h)
		Expiry     time.Duration `yaml:"expiry"`      // give up after (24h)
		Timeout    time.Duration `yaml:"timeout"`     // per attempt (5s)
		KeepDays   int           `yaml:"keep_days"`   // delivered and expired ones are deleted after (30)
	} `yaml:"notify"`

	// Settlement is the settlement section (cut-off, fees, calendar, cycles), read by package
	// settlement, which names the line of every error.
	Settlement *settlement.Config `yaml:"-"`

	// HSM is the security module: empty = SoftHSM2 under data_dir/hsm (the default).
	HSM HSMConfig `yaml:"hsm"`

	// Path is the file it was read from ("" for the built-in demo).
	Path string `yaml:"-"`
}

// TLSFiles are a certificate chain and its key (PEM files), reloaded when they change.
type TLSFiles struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// HSMConfig selects the security module.
type HSMConfig struct {
	// Module is the PKCS#11 library of an HSM; "" = the embedded SoftHSM2 token under
	// data_dir/hsm; "software" = keys in the switch's memory (benchmarks and tests only).
	Module string `yaml:"module"`
	Token  string `yaml:"token"` // token label
	// PIN of the token's user; prefer PINFile or $SHOUDAN_HSM_PIN so it is not in the config.
	PIN     string `yaml:"pin"`
	PINFile string `yaml:"pin_file"`
}

// envKeys can be overridden by SHOUDAN_<KEY with . as _>, e.g. SHOUDAN_DATABASE_URL,
// SHOUDAN_RULES_QPS_LIMIT.
var envKeys = []string{"database.url", "data_dir", "admin.addr", "console.addr", "log.format", "log.level", "issuer.addrs", "issuer.timeout",
	"issuer.zone_key", "issuer.conns", "shutdown.drain", "limits.max_conns", "limits.idle_timeout", "hsm.module", "hsm.token", "hsm.pin", "hsm.pin_file", "merchant_api.addr", "journal.retention_days"}

// ruleEnvKeys are rules overridable from the environment; they are written into the YAML tree
// before package terminals reads it, so an invalid override is reported like a bad line.
var ruleEnvKeys = []string{"qps_limit", "min_sdk_version", "refund_window_days"}

// Load reads a config file (path "" = the built-in demo) with SHOUDAN_* overrides, validates all
// of it, and returns the config and the registry it describes.
func Load(path string) (*Config, *terminals.Registry, error) {
	src := Demo
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, nil, err
		}
		src = b
	}
	c, reg, err := Parse(src)
	if err != nil {
		if path != "" {
			return nil, nil, fmt.Errorf("%s: %w", path, err)
		}
		return nil, nil, err
	}
	c.Path = path
	return c, reg, nil
}

// Parse validates a config document.
func Parse(src []byte) (*Config, *terminals.Registry, error) {
	v := viper.New()
	v.SetConfigType("yaml")
	v.SetEnvPrefix("SHOUDAN")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	for _, k := range envKeys {
		_ = v.BindEnv(k)
	}
	if err := v.ReadConfig(bytes.NewReader(src)); err != nil {
		return nil, nil, err
	}
	var c Config
	if err := v.Unmarshal(&c, func(dc *mapstructure.DecoderConfig) {
		dc.TagName = "yaml"
		dc.ErrorUnused = false
	}); err != nil {
		return nil, nil, err
	}
	if s := os.Getenv("SHOUDAN_ISSUER_ADDRS"); s != "" {
		c.Issuer.Addrs = strings.Split(s, ",")
	}
	var node yaml.Node
	if err := yaml.Unmarshal(src, &node); err != nil {
		return nil, nil, err
	}
	for _, k := range ruleEnvKeys {
		if val, ok := os.LookupEnv("SHOUDAN_RULES_" + strings.ToUpper(k)); ok {
			setScalar(&node, "rules", k, val)
		}
	}
	reg, err := terminals.Parse(&node)
	if err != nil {
		return nil, nil, err
	}
	if c.Settlement, err = settlement.ParseConfig(&node); err != nil {
		return nil, nil, err
	}
	if err := c.check(); err != nil {
		return nil, nil, err
	}
	if err := c.parseIssuer(&node); err != nil {
		return nil, nil, err
	}
	if c.Journal.RetentionDays == 0 {
		c.Journal.RetentionDays = 400
	}
	if least := reg.Rules.RefundWindowDays + 30; c.Journal.RetentionDays < least {
		return nil, nil, fmt.Errorf("journal.retention_days: expected at least rules.refund_window_days + 30 = %d (a refund must find its original), found %d", least, c.Journal.RetentionDays)
	}
	return &c, reg, nil
}

func (c *Config) check() error {
	if c.DataDir == "" {
		c.DataDir = "./data"
	}
	if c.Issuer.Timeout == 0 {
		c.Issuer.Timeout = 3 * time.Second
	}
	if c.Limits.MaxConns == 0 {
		c.Limits.MaxConns = 20000
	}
	if c.Limits.MaxInFlight == 0 {
		c.Limits.MaxInFlight = 4
	}
	if c.Limits.IdleTimeout == 0 {
		c.Limits.IdleTimeout = 5 * time.Minute
	}
	if c.Limits.WriteTimout == 0 {
		c.Limits.WriteTimout = 5 * time.Second
	}
	if c.Log.Format == "" {
		c.Log.Format = "json"
	}
	if c.Console.Addr == "" {
		c.Console.Addr = "127.0.0.1:8080"
	}
	if c.Console.SessionIdle == 0 {
		c.Console.SessionIdle = 30 * time.Minute
	}
	if c.Console.SessionMax == 0 {
		c.Console.SessionMax = 12 * time.Hour
	}
	if c.Console.SessionIdle < time.Second || c.Console.SessionMax < c.Console.SessionIdle {
		return fmt.Errorf("console: expected 1s <= session_idle <= session_max, found %s and %s", c.Console.SessionIdle, c.Console.SessionMax)
	}
	if len(c.Listeners) == 0 {
		return fmt.Errorf("listeners: expected at least one listener")
	}
	for i, l := range c.Listeners {
		switch terminals.Environment(l.Env) {
		case terminals.Production, terminals.Test:
		default:
			return fmt.Errorf("listeners[%d].env: expected production or test, found %q", i, l.Env)
		}
		switch l.TLS.Mode {
		case "", "off":
		case "tls", "mutual":
			if l.TLS.Cert == "" || l.TLS.Key == "" {
				return fmt.Errorf("listeners[%d].tls: mode %s needs cert and key files", i, l.TLS.Mode)
			}
			if l.TLS.Mode == "mutual" && l.TLS.ClientCA == "" {
				return fmt.Errorf("listeners[%d].tls: mode mutual needs client_ca, the CA terminal certificates are signed by", i)
			}
		default:
			return fmt.Errorf("listeners[%d].tls.mode: expected off, tls or mutual, found %q", i, l.TLS.Mode)
		}
		if l.Capture != "" && terminals.Environment(l.Env) == terminals.Production {
			return fmt.Errorf("listeners[%d].capture: capture is refused on a production listener (it would record live card data)", i)
		}
	}
	if c.Notify.KeepDays < 0 {
		return fmt.Errorf("notify.keep_days: expected 0 (the default, 30) or more days, found %d", c.Notify.KeepDays)
	}
	if c.Issuer.Timeout < 100*time.Millisecond || c.Issuer.Timeout > 60*time.Second {
		return fmt.Errorf("issuer.timeout: expected 100ms..60s, found %s", c.Issuer.Timeout)
	}
	if z := strings.TrimSpace(c.Issuer.ZoneKey); z != "demo" {
		if _, err := keys.ParseBlock(z, "ZPK"); err != nil {
			return fmt.Errorf("issuer.zone_key: %v", err)
		}
	}
	if z := strings.TrimSpace(c.Issuer.ZoneMasterKey); z != "demo" && z != "" {
		if _, err := keys.ParseBlock(z, "ZMK"); err != nil {
			return fmt.Errorf("issuer.zone_master_key: %v", err)
		}
	}
	if r := c.Issuer.ZPKRotation; r != 0 && (r < time.Minute || c.Issuer.ZoneMasterKey == "") {
		return fmt.Errorf("issuer.zpk_rotation: expected 0 (off) or at least 1m with issuer.zone_master_key set, found %s (zone_master_key %q)", r, c.Issuer.ZoneMasterKey)
	}
	if c.Admin.Addr != "" {
		if err := CheckExposure("admin.addr", c.Admin.Addr, c.Admin.TLS.Cert != "" && c.Admin.TLS.Key != "", c.Admin.TokenFile != ""); err != nil {
			return err
		}
	}
	if c.Console.Addr != "" && c.Console.Addr != "off" {
		// the console authenticates its users but serves no TLS yet: loopback only (behind a
		// TLS-terminating proxy on the same host) until it does
		if err := CheckExposure("console.addr", c.Console.Addr, false, true); err != nil {
			return err
		}
	}
	if c.HSM.Module != "" && c.HSM.Module != "software" && c.HSM.Token == "" {
		return fmt.Errorf("hsm.token: expected the label of the token on %s", c.HSM.Module)
	}
	if c.SignOn.Max < 0 || c.SignOn.Window < 0 {
		return fmt.Errorf("signon: expected max_per_window ≥ 0 and window ≥ 0 (0 = the default 6 per 10m), found %d per %s", c.SignOn.Max, c.SignOn.Window)
	}
	if c.Rejects.MaxRows < 0 || c.Rejects.MaxAge < 0 {
		return fmt.Errorf("rejects: expected max_rows ≥ 0 and max_age ≥ 0 (0 = the default 100000 rows, 720h), found %d, %s", c.Rejects.MaxRows, c.Rejects.MaxAge)
	}
	for i := range c.Bind {
		b := &c.Bind[i]
		if b.MID == "" || b.TID == "" || len(b.From) == 0 {
			return fmt.Errorf("bind[%d]: expected mid, tid and at least one address range in from, found mid %q tid %q from %v", i, b.MID, b.TID, b.From)
		}
		b.Ranges = b.Ranges[:0]
		for _, f := range b.From {
			p, err := netip.ParsePrefix(f)
			if err != nil {
				a, aerr := netip.ParseAddr(f)
				if aerr != nil {
					return fmt.Errorf("bind[%d].from: expected an address range (10.1.2.0/24) or an address, found %q", i, f)
				}
				p = netip.PrefixFrom(a, a.BitLen())
			}
			b.Ranges = append(b.Ranges, p.Masked())
		}
	}
	if c.MerchantAPI.Window < 0 || c.Notify.Backoff < 0 || c.Notify.MaxBackoff < 0 || c.Notify.Expiry < 0 || c.Notify.Timeout < 0 {
		return fmt.Errorf("merchant_api.window and notify durations: expected ≥ 0 (0 = the default), found a negative one")
	}
	if c.Log.Format != "json" && c.Log.Format != "text" {
		return fmt.Errorf("log.format: expected json or text, found %q", c.Log.Format)
	}
	return nil
}

// CheckExposure refuses an HTTP surface (admin, console) on a non-loopback address unless it has
// TLS and authentication: metrics, profiles and back-office pages are not for the open network.
func CheckExposure(key, addr string, hasTLS, hasAuth bool) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%s: expected host:port, found %q", key, addr)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	if !hasTLS || !hasAuth {
		return fmt.Errorf("%s: %s is not a loopback address: binding it needs TLS (cert and key) and authentication configured; use 127.0.0.1 or configure both", key, addr)
	}
	return nil
}

// setScalar sets section.key in a YAML document, adding the key (and section) when absent.
func setScalar(doc *yaml.Node, section, key, val string) {
	root := doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind != yaml.MappingNode {
		return
	}
	var sec *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value == section {
			sec = root.Content[i+1]
		}
	}
	if sec == nil {
		sec = &yaml.Node{Kind: yaml.MappingNode}
		root.Content = append(root.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: section}, sec)
	}
	for i := 0; i+1 < len(sec.Content); i += 2 {
		if sec.Content[i].Value == key {
			sec.Content[i+1] = &yaml.Node{Kind: yaml.ScalarNode, Value: val, Line: sec.Content[i+1].Line}
			return
		}
	}
	sec.Content = append(sec.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: key}, &yaml.Node{Kind: yaml.ScalarNode, Value: val})
}
