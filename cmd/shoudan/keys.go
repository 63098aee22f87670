package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/shoudan/shoudan/switch/app"
	"github.com/shoudan/shoudan/switch/hsm"
	"github.com/shoudan/shoudan/switch/journal"
	"github.com/shoudan/shoudan/terminals"
	"github.com/shoudan/shoudan/terminals/registrydb"
	"github.com/spf13/cobra"
)

func keysCmd(cfgPath *string) *cobra.Command {
	c := &cobra.Command{Use: "keys", Short: "Key ceremonies (terminal master keys, the zone PIN and zone master keys) and zone PIN key changes"}
	for _, usage := range []string{"TMK", "ZPK", "ZMK"} {
		var tid, expect string
		var n int
		var print bool
		use, short := "import-tmk --tid TID", "Enter a terminal's master key from 2 or 3 components; its block replaces the terminal's tmk in the config"
		switch usage {
		case "ZPK":
			use, short = "import-zpk", "Enter the zone PIN key shared with the issuer from 2 or 3 components; its block replaces issuer.zone_key (a live rotation)"
		case "ZMK":
			use, short = "import-zmk", "Enter the zone master key (AES) shared with the issuer from 2 or 3 components; its block replaces issuer.zone_master_key, which key changes (keys rotate-zpk) send new zone PIN keys under"
		}
		cmd := &cobra.Command{
			Use:   use,
			Short: short,
			Long: short + `.
Each custodian types a component (16, 32 or 48 hex digits) unseen and sees its check value; the
components are combined by XOR, the combined key's check value must match the key form's
(--kcv, or typed at the end), and only then is the key wrapped under the security module's KEK
and written to the config as a KB1 block. A running switch applies the change live. No clear
component is written anywhere.`,
			Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				if usage == "TMK" && tid == "" {
					return fmt.Errorf("--tid: expected the terminal ID whose master key is entered")
				}
				return runCeremony(cmd.InOrStdin(), cmd.OutOrStdout(), *cfgPath, usage, tid, n, expect, print)
			},
		}
		cmd.Flags().StringVar(&tid, "tid", "", "terminal ID")
		cmd.Flags().IntVar(&n, "components", 2, "number of components: 2 or 3")
		cmd.Flags().StringVar(&expect, "kcv", "", "the combined key's check value from the key form (default: asked at the end)")
		cmd.Flags().BoolVar(&print, "print", false, "print the block instead of writing it into the config")
		if usage != "TMK" {
			cmd.Flags().MarkHidden("tid")
		}
		c.AddCommand(cmd)
	}
	c.AddCommand(&cobra.Command{
		Use:   "rotate-zpk",
		Short: "Change the zone PIN key over the issuer link now (the running switch, through its admin port)",
		Long: `Change the zone PIN key over the issuer link now. The running switch's security module generates
a new key, every issuer endpoint with a live connection is sent it under the zone master key
(0800, F70 101) and must accept it; only then does the switch use it (F53 carries its index), and
its other nodes follow within seconds. PIN transactions under way are not disturbed: the issuer
keeps the previous key by its index. A refused change leaves the old key in use.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return adminCall(cmd.OutOrStdout(), *cfgPath, http.MethodPost, "/keys/rotate-zpk")
		},
	})
	c.AddCommand(&cobra.Command{
		Use:   "zone",
		Short: "Show the zone PIN key in use (index, check value) and the last key changes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return adminCall(cmd.OutOrStdout(), *cfgPath, http.MethodGet, "/keys/zone")
		},
	})
	return c
}

// adminCall calls the running switch's admin endpoint path (admin.addr of the config, with
// admin.token_file's token and admin.tls's certificate when set) and prints the answer.
func adminCall(out io.Writer, cfgPath, method, path string) error {
	c, _, err := loadConfig(cfgPath)
	if err != nil {
		return err
	}
	if c.Admin.Addr == "" {
		return fmt.Errorf("%s: no admin.addr: the running switch is reached through its admin port", c.Path)
	}
	scheme, client := "http", &http.Client{Timeout: 30 * time.Second}
	if c.Admin.TLS.Cert != "" {
		pem, err := os.ReadFile(c.Admin.TLS.Cert)
		if err != nil {
			return fmt.Errorf("admin.tls.cert: %w", err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		scheme, client.Transport = "https", &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	}
	req, err := http.NewRequest(method, scheme+"://"+c.Admin.Addr+path, nil)
	if err != nil {
		return err
	}
	if c.Admin.TokenFile != "" {
		tok, err := os.ReadFile(c.Admin.TokenFile)
		if err != nil {
			return fmt.Errorf("admin.token_file: %w", err)
		}
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("the switch's admin port %s (is `shoudan serve` running?): %w", c.Admin.Addr, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var pretty bytes.Buffer
	if json.Indent(&pretty, bytes.TrimSpace(body), "", "  ") == nil {
		body = append(pretty.Bytes(), '\n')
	}
	out.Write(body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	return nil
}

func runCeremony(in io.Reader, out io.Writer, cfgPath, usage, tid string, n int, expect string, print bool) error {
	if err := app.NoCoreDumps(); err != nil { // the components pass through this process
		return err
	}
	path, err := configPath(cfgPath)
	if err != nil {
		return err
	}
	c, reg, err := app.Load(path)
	if err != nil {
		return err
	}
	what := "the issuer zone"
	if usage == "ZMK" {
		tid = app.ZMKKey
	}
	inDB := "" // the terminal's MID when it is registered in the registry database only
	if usage == "TMK" {
		found := false
		for _, t := range reg.Terminals() {
			found = found || t.TID == tid
		}
		if !found {
			// registered from the console or `shoudan terminals`: its tmk lives in the database
			err := withRegistry(context.Background(), cfgPath, func(s *registrydb.Store) error {
				r, err := s.Load(context.Background())
				if err != nil {
					return err
				}
				for _, t := range r.Terminals() {
					if t.TID == tid {
						inDB = t.MID
					}
				}
				return nil
			})
			if err != nil {
				return fmt.Errorf("--tid %s: not a terminal of %s, and the registry database could not be read: %w", tid, path, err)
			}
			if inDB == "" {
				return fmt.Errorf("--tid %s: not a terminal of %s nor of the registry database", tid, path)
			}
		}
		what = "terminal " + tid
	}
	if err := os.MkdirAll(c.DataDir, 0o755); err != nil {
		return err
	}
	key, err := journal.LoadOrCreateKey(filepath.Join(c.DataDir, "journal.key"))
	if err != nil {
		return err
	}
	vault, err := journal.NewVault(key)
	if err != nil {
		return err
	}
	sec, err := app.OpenSecurity(c, vault, slog.New(slog.DiscardHandler))
	if err != nil {
		return fmt.Errorf("security module: %w", err)
	}
	defer sec.Close()
	b, err := hsm.Ceremony{Usage: usage, For: what, Components: n, Expect: expect, In: in, Out: out}.Run(sec)
	if err != nil {
		return err
	}
	if print {
		fmt.Fprintln(out, b.String())
		return nil
	}
	if inDB != "" {
		err := withRegistry(context.Background(), cfgPath, func(s *registrydb.Store) error {
			_, err := s.EditTerminal(context.Background(), "keys import-tmk by "+osUser(), tid, inDB, func(t *terminals.TerminalSpec) {
				t.TMK, t.TMKSealed = b.String(), ""
			})
			return err
		})
		if err != nil {
			return fmt.Errorf("the key was not written to the registry database (%v); its block is %s", err, b.String())
		}
		fmt.Fprintf(out, "Written to terminal %s in the registry database (every node applies it live).\n", tid)
		return nil
	}
	if err := app.SetKey(path, tid, b.String()); err != nil {
		return fmt.Errorf("the key was not written (%v); its block is %s", err, b.String())
	}
	fmt.Fprintf(out, "Written to %s (a running switch applies it live).\n", path)
	return nil
}
