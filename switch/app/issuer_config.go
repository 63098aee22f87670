package app

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"strconv"
	"time"

	"github.com/shoudan/shoudan/issuerlink"
	"github.com/shoudan/shoudan/switch/netserve"
	"github.com/shoudan/shoudan/terminals"
	"gopkg.in/yaml.v3"
)

// IssuerRoute is one entry of issuer.routes.
type IssuerRoute struct {
	Name        string `yaml:"name"`
	Primary     string `yaml:"primary"`
	Secondary   string `yaml:"secondary"`
	Institution string `yaml:"institution"`
}

// IssuerTLS is issuer.tls: TLS on every connection the link dials, to every endpoint of every
// route. The files are reloaded when they change; each new connection takes the current ones.
type IssuerTLS struct {
	Mode string `yaml:"mode"` // off (default), tls, or mutual (the switch presents cert)
	Cert string `yaml:"cert"` // mutual: the switch's client certificate chain (PEM)
	Key  string `yaml:"key"`  // mutual: its private key (PEM)
	// CA is the bundle the issuer's certificate must chain to ("" = the system's roots).
	CA string `yaml:"ca"`
	// ServerName is the name the issuer's certificate must carry ("" = each endpoint's host).
	ServerName string `yaml:"server_name"`
}

// On reports whether the link dials with TLS.
func (t IssuerTLS) On() bool { return t.Mode == "tls" || t.Mode == "mutual" }

// checkTLS reads and checks issuer.tls (a child of iss) and refuses issuer.sim.tls: the in-process
// simulator is reached over loopback inside the same process, where TLS protects nothing.
func (c *Config) checkTLS(iss *yaml.Node) error {
	bad := func(l int, key, why string) error { return &terminals.ConfigError{Line: l, Key: key, Reason: why} }
	if s := child(iss, "sim"); s != nil && child(s, "tls") != nil {
		return bad(keyLineOf(s, "tls"), "issuer.sim.tls", "the in-process simulator listens on loopback in the switch's own process and speaks plain TCP; TLS is for `shoudan issuer FILE` (its tls key) with issuer.tls here")
	}
	n := child(iss, "tls")
	if n == nil {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		return bad(n.Line, "issuer.tls", "expected a mapping: {mode: off|tls|mutual, cert, key, ca, server_name}")
	}
	for j := 0; j+1 < len(n.Content); j += 2 {
		switch k := n.Content[j]; k.Value {
		case "mode", "cert", "key", "ca", "server_name":
		default:
			return bad(k.Line, "issuer.tls."+k.Value, "unknown key (expected mode, cert, key, ca, server_name)")
		}
	}
	if err := n.Decode(&c.Issuer.TLS); err != nil {
		return bad(n.Line, "issuer.tls", err.Error())
	}
	t := c.Issuer.TLS
	switch t.Mode {
	case "", "off":
		return nil
	case "tls":
		if t.Cert != "" || t.Key != "" {
			return bad(keyLineOf(n, "mode"), "issuer.tls.mode", "mode tls presents no client certificate, found cert or key: expected mode mutual to present them")
		}
	case "mutual":
		if t.Cert == "" || t.Key == "" {
			return bad(keyLineOf(n, "mode"), "issuer.tls", fmt.Sprintf("mode mutual: expected cert and key (the switch's client certificate and its key), found cert %q key %q", t.Cert, t.Key))
		}
	default:
		return bad(keyLineOf(n, "mode"), "issuer.tls.mode", fmt.Sprintf("expected off, tls or mutual, found %q", t.Mode))
	}
	if len(c.Issuer.Addrs) == 0 && len(c.Issuer.Routes) == 0 {
		return bad(keyLineOf(n, "mode"), "issuer.tls", "expected issuer.addrs or issuer.routes to dial over TLS; without them the in-process simulator serves, in plain TCP on loopback")
	}
	return nil
}

// linkTLS starts issuer.tls: nil when it is off; else the config for each dial (the current
// files, reloaded when they change) and the function that stops watching them.
func (c *Config) linkTLS(log *slog.Logger) (func() *tls.Config, func(), error) {
	t := c.Issuer.TLS
	if !t.On() {
		return nil, func() {}, nil
	}
	f := netserve.TLSFiles{ServerCA: t.CA}
	if t.Mode == "mutual" {
		f.Cert, f.Key = t.Cert, t.Key
	}
	r, err := netserve.NewClientTLS(f, log)
	if err != nil {
		return nil, nil, fmt.Errorf("issuer.tls: %w", err)
	}
	return func() *tls.Config {
		tc := r.Client()
		if t.ServerName != "" {
			tc.ServerName = t.ServerName
		}
		return tc
	}, r.Close, nil
}

var routeName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)

// parseIssuer reads and checks the routing keys of the issuer section (routes, bins,
// default_route, and the lines of conns, echo_interval, addrs) and shutdown.drain, naming the
// line of every error. The scalars were decoded by viper already; this adds what viper cannot:
// the lines, and BIN keys kept exactly as written.
func (c *Config) parseIssuer(doc *yaml.Node) error {
	root := doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	iss := child(root, "issuer")
	line := func(key string) int {
		if iss == nil {
			return root.Line
		}
		if k := childKey(iss, key); k != nil {
			return k.Line
		}
		return iss.Line
	}
	bad := func(l int, key, why string) error { return &terminals.ConfigError{Line: l, Key: key, Reason: why} }

	is := &c.Issuer
	if is.Conns == 0 {
		is.Conns = 4
	}
	if is.Conns < 1 || is.Conns > 64 {
		return bad(line("conns"), "issuer.conns", fmt.Sprintf("expected 1..64 connections per endpoint, found %d", is.Conns))
	}
	if is.Echo == 0 {
		is.Echo = 30 * time.Second
	}
	if is.Echo < time.Second || is.Echo > 10*time.Minute {
		return bad(line("echo_interval"), "issuer.echo_interval", fmt.Sprintf("expected 1s..10m, found %s", is.Echo))
	}
	if c.Shutdown.Drain == 0 {
		c.Shutdown.Drain = 10 * time.Second
	}
	if c.Shutdown.Drain < 100*time.Millisecond || c.Shutdown.Drain > 5*time.Minute {
		l := root.Line
		if s := child(root, "shutdown"); s != nil {
			l = keyLineOf(s, "drain")
		}
		return bad(l, "shutdown.drain", fmt.Sprintf("expected 100ms..5m, found %s", c.Shutdown.Drain))
	}
	if len(is.Addrs) > 2 {
		return bad(line("addrs"), "issuer.addrs", fmt.Sprintf("expected a primary and at most a secondary address, found %d (several issuers: use issuer.routes)", len(is.Addrs)))
	}
	for i, a := range is.Addrs {
		if err := hostPort(a); err != nil {
			return bad(line("addrs"), fmt.Sprintf("issuer.addrs[%d]", i), err.Error())
		}
	}

	is.Routes, is.BINs, is.DefaultRoute = nil, map[string]string{}, ""
	if iss == nil {
		return nil
	}
	names := map[string]bool{}
	if len(is.Addrs) > 0 {
		names[issuerlink.DefaultRoute] = true
	}
	if n := child(iss, "routes"); n != nil {
		if n.Kind != yaml.SequenceNode {
			return bad(n.Line, "issuer.routes", "expected a list of routes")
		}
		for i, item := range n.Content {
			where := fmt.Sprintf("issuer.routes[%d]", i)
			if item.Kind != yaml.MappingNode {
				return bad(item.Line, where, "expected a mapping with name, primary and optional secondary, institution")
			}
			for j := 0; j+1 < len(item.Content); j += 2 {
				switch k := item.Content[j]; k.Value {
				case "name", "primary", "secondary", "institution":
				default:
					return bad(k.Line, where+"."+k.Value, "unknown key (expected name, primary, secondary, institution)")
				}
			}
			var r IssuerRoute
			if err := item.Decode(&r); err != nil {
				return bad(item.Line, where, err.Error())
			}
			switch {
			case !routeName.MatchString(r.Name):
				return bad(keyLineOf(item, "name"), where+".name", fmt.Sprintf("expected 1-32 of a-z 0-9 _ - (starting with a letter or digit), found %q", r.Name))
			case names[r.Name]:
				why := "another route has this name"
				if r.Name == issuerlink.DefaultRoute {
					why = "the route of issuer.addrs is called default"
				}
				return bad(keyLineOf(item, "name"), where+".name", why)
			}
			names[r.Name] = true
			if err := hostPort(r.Primary); err != nil {
				return bad(keyLineOf(item, "primary"), where+".primary", err.Error())
			}
			if r.Secondary != "" {
				if err := hostPort(r.Secondary); err != nil {
					return bad(keyLineOf(item, "secondary"), where+".secondary", err.Error())
				}
				if r.Secondary == r.Primary {
					return bad(keyLineOf(item, "secondary"), where+".secondary", "expected another endpoint than the primary")
				}
			}
			if r.Institution != "" && !numeric(r.Institution, 1, 11) {
				return bad(keyLineOf(item, "institution"), where+".institution", fmt.Sprintf("expected an institution code of 1-11 digits (F100), found %q", r.Institution))
			}
			is.Routes = append(is.Routes, r)
		}
	}
	if n := child(iss, "default_route"); n != nil {
		is.DefaultRoute = n.Value
		if !names[n.Value] {
			return bad(n.Line, "issuer.default_route", fmt.Sprintf("no route %q", n.Value))
		}
	}
	if len(is.Routes) > 0 && is.DefaultRoute == "" && len(is.Addrs) == 0 {
		return bad(line("routes"), "issuer.default_route", "expected the route for cards no BIN matches (or issuer.addrs, which is the route called default)")
	}
	if n := child(iss, "bins"); n != nil {
		if n.Kind != yaml.MappingNode {
			return bad(n.Line, "issuer.bins", `expected a mapping of BIN prefixes to route names, e.g. "622202": cup`)
		}
		for j := 0; j+1 < len(n.Content); j += 2 {
			k, v := n.Content[j], n.Content[j+1]
			if !numeric(k.Value, 1, 11) {
				return bad(k.Line, "issuer.bins."+k.Value, "expected a BIN prefix of 1-11 digits (quote it)")
			}
			if _, dup := is.BINs[k.Value]; dup {
				return bad(k.Line, "issuer.bins."+k.Value, "this prefix is listed twice")
			}
			if !names[v.Value] {
				return bad(v.Line, "issuer.bins."+k.Value, fmt.Sprintf("no route %q", v.Value))
			}
			is.BINs[k.Value] = v.Value
		}
	}
	if len(is.BINs) > 0 && len(is.Routes) == 0 && len(is.Addrs) == 0 {
		return bad(line("bins"), "issuer.bins", "BINs need issuer.routes to route to")
	}
	return c.checkTLS(iss)
}

// LinkConfig is the issuer link the config describes; sim is the in-process simulator's address
// when neither issuer.addrs nor issuer.routes is set.
func (c *Config) LinkConfig(sim string) issuerlink.Config {
	is := c.Issuer
	lc := issuerlink.Config{BINs: is.BINs, Default: is.DefaultRoute, Conns: is.Conns, Timeout: is.Timeout, Echo: is.Echo}
	addrs := is.Addrs
	if len(addrs) == 0 && len(is.Routes) == 0 {
		addrs = []string{sim}
	}
	if len(addrs) > 0 {
		r := issuerlink.Route{Name: issuerlink.DefaultRoute, Primary: addrs[0]}
		if len(addrs) > 1 {
			r.Secondary = addrs[1]
		}
		lc.Routes = append(lc.Routes, r)
		if lc.Default == "" {
			lc.Default = issuerlink.DefaultRoute
		}
	}
	for _, r := range is.Routes {
		lc.Routes = append(lc.Routes, issuerlink.Route{Name: r.Name, Primary: r.Primary, Secondary: r.Secondary, Institution: r.Institution})
	}
	return lc
}

func child(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

func childKey(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i]
		}
	}
	return nil
}

func keyLineOf(m *yaml.Node, key string) int {
	if k := childKey(m, key); k != nil {
		return k.Line
	}
	return m.Line
}

func hostPort(a string) error {
	h, p, err := net.SplitHostPort(a)
	if err != nil || h == "" {
		return fmt.Errorf("expected host:port, found %q", a)
	}
	if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("expected a port 1..65535 in %q", a)
	}
	return nil
}

func numeric(s string, lo, hi int) bool {
	if len(s) < lo || len(s) > hi {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
