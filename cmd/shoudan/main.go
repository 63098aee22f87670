// Command shoudan is the switch, the simulated issuer and the operator tools in one binary.
package main

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/shoudan/shoudan/issuerlink/sim"
	"github.com/shoudan/shoudan/switch/app"
	"github.com/shoudan/shoudan/terminals"
	"github.com/spf13/cobra"
)

func main() {
	root := &cobra.Command{Use: "shoudan", Short: "shoudan: an ISO 8583 acquiring switch for CUP POS terminals", SilenceUsage: true, SilenceErrors: true}
	var cfgPath string
	root.PersistentFlags().StringVarP(&cfgPath, "config", "c", "", "config file (default: <data_dir>/shoudan.yaml, i.e. ./data/shoudan.yaml, which `serve` writes from the built-in demo config on its first run)")
	root.AddCommand(decodeCmd(), serveCmd(&cfgPath), issuerCmd(), migrateCmd(&cfgPath), configCmd(), posCmd(&cfgPath), explainCmd(&cfgPath), txnCmd(&cfgPath), terminalsCmd(&cfgPath), replayCmd(&cfgPath), benchCmd(), rejectsCmd(&cfgPath), whatifCmd(), settleCmd(&cfgPath), statementsCmd(&cfgPath))
	root.AddCommand(usersCmd(&cfgPath))
	root.AddCommand(keysCmd(&cfgPath))                         // key ceremonies (issue 17)
	root.AddCommand(journalCmd(&cfgPath), doctorCmd(&cfgPath)) // partitions, retention, restore; settings that hurt (issue 13)
	if cmd, err := root.ExecuteC(); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", cmd.CommandPath(), err)
		var d errDeclined
		if errors.As(err, &d) {
			os.Exit(2) // ran, and was declined
		}
		os.Exit(1)
	}
}

func logger() *slog.Logger { return slog.New(slog.NewJSONHandler(os.Stderr, nil)) }

func serveCmd(cfgPath *string) *cobra.Command {
	var capture string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the switch (default: private PostgreSQL, simulated issuer, demo terminals)",
		Long: `Run the switch. Without --config it uses the demo config, written on first run to
<data_dir>/shoudan.yaml so that it can be edited while the switch runs (changes apply live).`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path, err := configPath(*cfgPath)
			if err != nil {
				return err
			}
			c, reg, err := app.Load(path)
			if err != nil {
				return err
			}
			if capture != "" {
				if err := enableCapture(c, capture); err != nil {
					return err
				}
			}
			app.TuneRuntime()
			if err := app.NoCoreDumps(); err != nil {
				return err
			}
			logw := app.NewLogWriter(os.Stderr, 100*time.Millisecond)
			defer logw.Close()
			log := app.NewLogger(c, logw)
			ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer cancel()
			a, err := app.Start(ctx, c, reg, log)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "config %s (watched: edits apply without a restart)\n", path)
			if pg := a.PrivatePostgres(); pg != nil {
				fmt.Fprintf(out, "journal: private PostgreSQL in %s\n", pg.Data)
				if pg.Moved != "" {
					fmt.Fprintf(out, "  (%s)\n", pg.Moved)
				}
			}
			if a.Sim != nil {
				fmt.Fprintf(out, "simulated issuer on %s (control http://%s/ledger)\n", a.Sim.Addr, a.Sim.Ctl)
			}
			for _, l := range a.Listeners {
				fmt.Fprintf(out, "shoudan listening on %s (%s terminals)\n", l.Addr(), l.Cfg.Env)
			}
			if a.Admin != "" {
				fmt.Fprintf(out, "admin http://%s/metrics /healthz /readyz\n", a.Admin)
			}
			if a.Console != nil {
				fmt.Fprintf(out, "console http://%s/ (the back office)\n", a.Console.Addr())
			}
			printDemoUsers(out, a.DemoUsers)
			if err := a.Watch(); err != nil {
				log.Warn("config not watched", "err", err)
			}
			<-ctx.Done()
			fmt.Fprintf(out, "shutting down: finishing in-flight transactions (at most %s)\n", c.Shutdown.Drain)
			sctx, scancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer scancel()
			a.Close(sctx)
			return nil
		},
	}
	cmd.Flags().StringVar(&capture, "capture", "", "record request/response pairs of the test listener(s) as QA fixtures in this directory")
	return cmd
}

// loadConfig loads the config the tools work with: the given file, or the switch's own
// <data_dir>/shoudan.yaml. The tools create nothing: without that file they say where they
// looked. While the file is invalid (being edited) they use the copy of the config the running
// switch last applied (<file>.applied), as the switch itself does, and say so.
func loadConfig(given string) (*app.Config, *terminals.Registry, error) {
	path, err := defaultConfigPath(given)
	if err != nil {
		return nil, nil, err
	}
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		abs, _ := filepath.Abs(path)
		if given != "" {
			return nil, nil, fmt.Errorf("config %s: no such file", abs)
		}
		return nil, nil, fmt.Errorf("no config at %s: run this in the folder where `shoudan serve` runs (it writes that file on its first run), or give the config with -c FILE", abs)
	}
	c, reg, err := app.Load(path)
	if err == nil {
		return c, reg, nil
	}
	if c2, reg2, err2 := app.Load(path + app.AppliedSuffix); err2 == nil {
		fmt.Fprintf(os.Stderr, "warning: %v\nwarning: using the config the running switch last applied (%s) until the file is fixed\n", err, path+app.AppliedSuffix)
		c2.Path = path
		return c2, reg2, nil
	}
	return nil, nil, err
}

// defaultConfigPath is the given file, or <data_dir>/shoudan.yaml (data_dir from
// SHOUDAN_DATA_DIR or the demo's ./data).
func defaultConfigPath(given string) (string, error) {
	if given != "" {
		return given, nil
	}
	c, _, err := app.Load("")
	if err != nil {
		return "", err
	}
	return filepath.Join(c.DataDir, "shoudan.yaml"), nil
}

// configPath is the file serve runs with: the one given, or the demo config written under the
// data directory on first run.
func configPath(given string) (string, error) {
	p, err := defaultConfigPath(given)
	if err != nil || given != "" {
		return p, err
	}
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return "", fmt.Errorf("data_dir: cannot create %s for the demo config: %v: run from a folder you can write, or set SHOUDAN_DATA_DIR", filepath.Dir(p), err)
	}
	return p, os.WriteFile(p, app.Demo, 0o644)
}

func enableCapture(c *app.Config, dir string) error {
	n := 0
	for i := range c.Listeners {
		if c.Listeners[i].Env == string(terminals.Test) {
			c.Listeners[i].Capture = dir
			n++
		}
	}
	if n == 0 {
		return fmt.Errorf("--capture: refused: no test listener to capture on (capture never runs on a production listener)")
	}
	return nil
}

func issuerCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "issuer CONFIG",
		Short: "Run the simulated issuer from its config file (format: docs/issuer.md)",
		Long: `Run the simulated issuer as its own process. CONFIG has the keys of serve's issuer.sim
section: listen, control, zone_key (32 or 48 hex digits, like the switch's), cards (pan, pin,
expiry, status, balance in yuan), limits (institution, mcc, merchant), faults, and ledger_dir,
retention, max_auths for its books, which survive a restart (default: issuer-ledger next to
CONFIG), and tls (cert, key, client_ca: a TLS listener, mutual with client_ca; files reloaded
live). docs/issuer.md describes every key, the answers and the control endpoint.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := sim.LoadConfig(args[0])
			if err != nil {
				return err
			}
			if c.LedgerDir == "" {
				c.LedgerDir = filepath.Join(filepath.Dir(args[0]), "issuer-ledger")
			}
			is, err := c.Build()
			if err != nil {
				return err
			}
			srv := sim.NewServer(is, c.Faults, logger())
			if err := srv.UseTLS(c.TLS); err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			if err := srv.Start(c.Listen, c.Control); err != nil {
				return err
			}
			mode := ""
			if c.TLS.ClientCA != "" {
				mode = " (mutual TLS)"
			} else if c.TLS.Cert != "" {
				mode = " (TLS)"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "simulated issuer on %s%s, control http://%s\n", srv.Addr, mode, srv.Ctl)
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
			path, err := configPath(*cfgPath)
			if err != nil {
				return err
			}
			c, _, err := app.Load(path)
			if err != nil {
				return err
			}
			j, pg, err := app.OpenJournal(cmd.Context(), c, logger())
			if err != nil {
				return err
			}
			j.Close()
			if pg != nil && !pg.Adopted() {
				_ = pg.Stop()
			}
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
			if _, _, err := app.Load(args[0]); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "config ok")
			return nil
		},
	})
	return c
}
