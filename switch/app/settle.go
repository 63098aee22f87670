package app

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"time"

	"github.com/shoudan/shoudan/issuerlink/sim"
	"github.com/shoudan/shoudan/switch/settlement"
)

// SettlementDirs are where statements are written and clearing files read.
func (c *Config) SettlementDirs() (statements, clearing string) {
	statements, clearing = c.Settlement.StatementsDir, c.Settlement.ClearingDir
	if statements == "" {
		statements = filepath.Join(c.DataDir, "statements")
	}
	if clearing == "" {
		clearing = filepath.Join(c.DataDir, "clearing")
	}
	return
}

// ClearingPath is the clearing file of settlement date d in dir.
func ClearingPath(dir string, d time.Time) string {
	return filepath.Join(dir, "SIM-"+d.Format("20060102")+".txt")
}

// SimCutoff is the simulated issuer's clearing cut-off: the acquirer's.
func SimCutoff(c *settlement.Config) sim.ClearingCutoff {
	return sim.ClearingCutoff{Loc: c.Cutoff.Loc, Minutes: c.Cutoff.Minutes}
}

// afterClose runs after an automatic close: with the in-process simulated issuer, its clearing
// file is written and reconciled; then the statements of the date are written.
func (a *App) afterClose(ctx context.Context, rs []settlement.DayResult) {
	stDir, clDir := a.Config.SettlementDirs()
	for _, r := range rs {
		if r.Already {
			continue
		}
		day := r.Date.Format("2006-01-02")
		if a.Sim != nil {
			var buf bytes.Buffer
			_ = a.Sim.Issuer.Ledger.WriteClearing(&buf, r.Date.Format("20060102"), SimCutoff(a.settleCfg.Load()), time.Now())
			p := ClearingPath(clDir, r.Date)
			if err := os.MkdirAll(clDir, 0o755); err == nil {
				_ = os.WriteFile(p, buf.Bytes(), 0o644)
			}
			f, err := settlement.ParseClearing(&buf)
			if err == nil {
				var rec *settlement.Reconciliation
				if rec, err = a.Settler.Reconcile(ctx, r.Date, f); err == nil {
					a.Log.Info("reconciled with the issuer's clearing file", "date", day, "matched", rec.Matched, "differences", len(rec.Differences))
				}
			}
			if err != nil {
				a.Log.Warn("reconciliation failed", "date", day, "err", err.Error())
			}
		}
		paths, err := a.Settler.WriteDay(ctx, r.Date, stDir)
		if err != nil {
			a.Log.Warn("statements not written", "date", day, "err", err.Error())
			continue
		}
		a.Log.Info("statements written", "date", day, "files", len(paths), "dir", stDir)
	}
}
