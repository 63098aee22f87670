package metrics

import (
	"encoding/json"
	"os"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestDashboardUsesRealMetrics: every metric the Grafana dashboard queries is one this package
// registers (a renamed metric would leave a panel silently empty).
func TestDashboardUsesRealMetrics(t *testing.T) {
	b, err := os.ReadFile("grafana-dashboard.json")
	require.NoError(t, err)
	var d struct {
		Panels []struct{ Targets []struct{ Expr string } }
	}
	require.NoError(t, json.Unmarshal(b, &d))
	GaugeFunc("shoudan_issuer_link_up", "x", func() float64 { return 1 })
	GaugeFunc("shoudan_saf_depth", "x", func() float64 { return 0 })
	GaugeFunc("shoudan_saf_oldest_seconds", "x", func() float64 { return 0 })
	Transactions.WithLabelValues("purchase", "00").Inc()
	RuleHits.WithLabelValues("x", "00").Inc()
	TerminalLatency.WithLabelValues("purchase").Observe(0.001)
	IssuerLatency.WithLabelValues("answered").Observe(0.001)
	ConnectedTerminals.WithLabelValues("production").Set(0)
	ConfigReloads.WithLabelValues("applied").Add(0)
	SAFDelivered.WithLabelValues("acked").Add(0)
	fams, err := Registry.Gather()
	require.NoError(t, err)
	known := map[string]bool{}
	for _, f := range fams {
		known[f.GetName()] = true
	}
	re := regexp.MustCompile(`shoudan_[a-z_]+`)
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			for _, m := range re.FindAllString(tg.Expr, -1) {
				base := regexp.MustCompile(`_(bucket|sum|count)$`).ReplaceAllString(m, "")
				require.True(t, known[m] || known[base], "dashboard queries %s, which is not registered", m)
			}
		}
	}
}
