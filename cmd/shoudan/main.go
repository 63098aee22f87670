// Command shoudan is the switch, the simulated issuer and the operator tools in one binary.
package main

import (
	"context"
	_ "embed"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/shoudan/shoudan/issuerlink"
	"github.com/shoudan/shoudan/issuerlink/sim"
	posswitch "github.com/shoudan/shoudan/switch"
	"github.com/shoudan/shoudan/switch/journal"
	"github.com/shoudan/shoudan/switch/journal/pginstance"
	"github.com/shoudan/shoudan/terminals"
	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"
)

//go:embed demo.yaml
var demoConfig []byte

// Config is the YAML config file (terminals, rules and whitelist are read by package terminals).
type Config struct {
	Listeners []struct {
		Addr string `yaml:"addr"`
		Env  string `yaml:"env"`
	} `yaml:"listeners"`
	Database struct {
		URL string `yaml:"url"`
	} `yaml:"database"`
	DataDir string `yaml:"data_dir"`
	Issuer  struct {
		Addrs   []string      `yaml:"addrs"`
		Timeout time.Duration `yaml:"timeout"`
		ZoneKey string        `yaml:"zone_key"`
		Sim     sim.Config    `yaml:"sim"`
	} `yaml:"issuer"`
}

func loadConfig(path string) (*Config, *terminals.Registry, error) {
	src := demoConfig
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, nil, err
		}
		src = b
	}
	var node yaml.Node
	if err := yaml.Unmarshal(src, &node); err != nil {
		return nil, nil, err
	}
	var c Config
	if err := node.Decode(&c); err != nil {
		return nil, nil, err
	}
	reg, err := terminals.Parse(&node)
	if err != nil {
		return nil, nil, err
	}
	if v := os.Getenv("SHOUDAN_DATABASE_URL"); v != "" {
		c.Database.URL = v
	}
	if v := os.Getenv("SHOUDAN_DATA_DIR"); v != "" {
		c.DataDir = v
	}
	if c.DataDir == "" {
		c.DataDir = "./data"
	}
	if c.Issuer.Timeout == 0 {
		c.Issuer.Timeout = 3 * time.Second
	}
	return &c, reg, nil
}

func main() {
	root := &cobra.Command{Use: "shoudan", Short: "shoudan: an ISO 8583 acquiring switch for CUP POS terminals", SilenceUsage: true}
	var cfgPath string
	root.PersistentFlags().StringVarP(&cfgPath, "config", "c", "", "config file (default: the built-in demo config)")
	root.AddCommand(decodeCmd(), serveCmd(&cfgPath), issuerCmd(), migrateCmd(&cfgPath), configCmd())
	if err := root.Execute(); err != nil {
		os.Exit(1)
	}
}

func logger() *slog.Logger { return slog.New(slog.NewJSONHandler(os.Stderr, nil)) }

// openJournal opens the configured database, or a private PostgreSQL under the data directory.
func openJournal(ctx context.Context, c *Config, log *slog.Logger) (*journal.Journal, func(), error) {
	key, err := journal.LoadOrCreateKey(filepath.Join(c.DataDir, "journal.key"))
	if err != nil {
		return nil, nil, err
	}
	vault, err := journal.NewVault(key)
	if err != nil {
		return nil, nil, err
	}
	url, stop := c.Database.URL, func() {}
	if url == "" {
		in, err := pginstance.Start(ctx, c.DataDir)
		if err != nil {
			return nil, nil, err
		}
		log.Info("private PostgreSQL ready", "data", in.Data)
		url, stop = in.URL(), func() { _ = in.Stop() }
	}
	j, err := journal.Open(ctx, url, vault)
	if err != nil {
		stop()
		return nil, nil, err
	}
	return j, func() { j.Close(); stop() }, nil
}

func serveCmd(cfgPath *string) *cobra.Command {
	return &cobra.Command{
		Use:   "serve",
		Short: "Run the switch (default: private PostgreSQL, simulated issuer, demo terminals)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := logger()
			c, reg, err := loadConfig(*cfgPath)
			if err != nil {
				return err
			}
			ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer cancel()
			j, closeJournal, err := openJournal(ctx, c, log)
			if err != nil {
				return err
			}
			defer closeJournal()
			addrs := c.Issuer.Addrs
			if len(addrs) == 0 {
				is, err := c.Issuer.Sim.Build()
				if err != nil {
					return fmt.Errorf("issuer.sim: %w", err)
				}
				srv := sim.NewServer(is, c.Issuer.Sim.Faults, log)
				if err := srv.Start(c.Issuer.Sim.Listen, c.Issuer.Sim.Control); err != nil {
					return err
				}
				defer srv.Close(context.Background())
				addrs = []string{srv.Addr}
				fmt.Fprintf(cmd.OutOrStdout(), "simulated issuer on %s (control http://%s/ledger)\n", srv.Addr, srv.Ctl)
			}
			link, err := issuerlink.Dial(addrs, c.Issuer.Timeout, log)
			if err != nil {
				return err
			}
			defer link.Close()
			sw, err := newSwitch(c, reg, j, link, log)
			if err != nil {
				return err
			}
			fwd := &issuerlink.Forwarder{Link: link, Queue: posswitch.SAFQueue{Journal: j}, Log: log, Every: 200 * time.Millisecond, MaxBackoff: 30 * time.Second}
			go fwd.Run(ctx)
			if n, err := sw.Recover(ctx); err == nil && n > 0 {
				log.Warn("recovered transactions left in flight: reversals armed", "count", n)
			}
			var ls []*posswitch.Listener
			for _, lc := range c.Listeners {
				l, err := sw.Listen(posswitch.ListenerConfig{Addr: lc.Addr, Env: terminals.Environment(lc.Env), MaxConns: 20000, MaxInFlight: 4,
					IdleTimeout: 5 * time.Minute, WriteTimeout: 5 * time.Second, RequestTimeout: c.Issuer.Timeout + 5*time.Second})
				if err != nil {
					return err
				}
				ls = append(ls, l)
				fmt.Fprintf(cmd.OutOrStdout(), "shoudan listening on %s (%s terminals)\n", l.Addr(), lc.Env)
			}
			<-ctx.Done()
			sctx, scancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer scancel()
			for _, l := range ls {
				l.Close(sctx)
			}
			return nil
		},
	}
}

func newSwitch(c *Config, reg *terminals.Registry, j *journal.Journal, link *issuerlink.Link, log *slog.Logger) (*posswitch.Switch, error) {
	zk, err := hexKey(c.Issuer.ZoneKey)
	if err != nil {
		return nil, fmt.Errorf("issuer.zone_key: %w", err)
	}
	return &posswitch.Switch{Registry: terminals.NewHolder(reg), Journal: j, Link: link,
		Security: &posswitch.Software{Vault: j.Vault, ZoneKey: zk}, Log: log, Now: time.Now}, nil
}

func issuerCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "issuer CONFIG",
		Short: "Run the simulated issuer from its config file",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := sim.LoadConfig(args[0])
			if err != nil {
				return err
			}
			is, err := c.Build()
			if err != nil {
				return err
			}
			srv := sim.NewServer(is, c.Faults, logger())
			if err := srv.Start(c.Listen, c.Control); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "simulated issuer on %s, control http://%s\n", srv.Addr, srv.Ctl)
			ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer cancel()
			<-ctx.Done()
			srv.Close(context.Background())
			return nil
		},
	}
}

func migrateCmd(cfgPath *string) *cobra.Command {
	return &cobra.Command{
		Use:   "migrate",
		Short: "Apply the journal's schema migrations",
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, _, err := loadConfig(*cfgPath)
			if err != nil {
				return err
			}
			_, closeJournal, err := openJournal(cmd.Context(), c, logger())
			if err != nil {
				return err
			}
			closeJournal()
			fmt.Fprintln(cmd.OutOrStdout(), "migrations applied")
			return nil
		},
	}
}

func configCmd() *cobra.Command {
	c := &cobra.Command{Use: "config", Short: "Config tools"}
	c.AddCommand(&cobra.Command{
		Use:   "check FILE",
		Short: "Validate a config file without applying it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, _, err := loadConfig(args[0]); err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			fmt.Fprintln(cmd.OutOrStdout(), "config ok")
			return nil
		},
	})
	return c
}
