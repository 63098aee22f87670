// Package metrics is the switch's Prometheus instrumentation (github.com/prometheus/client_golang):
// one registry, the collectors every part reports to, and the admin handler that serves them.
package metrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Registry holds every shoudan collector (and the Go and process collectors).
var Registry = prometheus.NewRegistry()

// latency buckets from 0.25 ms to 10 s: a switch's added latency lives in the first few.
var buckets = []float64{.00025, .0005, .001, .002, .004, .008, .016, .032, .064, .128, .256, .512, 1, 2.5, 5, 10}

var (
	Transactions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "shoudan_transactions_total", Help: "Terminal transactions answered, by kind and response code.",
	}, []string{"kind", "code"})
	RuleHits = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "shoudan_decision_rule_total", Help: "Decisions by the rule that made them and its code.",
	}, []string{"rule", "code"})
	TerminalLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "shoudan_terminal_seconds", Help: "Time from a request's arrival to its answer being written, by kind.", Buckets: buckets,
	}, []string{"kind"})
	IssuerLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "shoudan_issuer_seconds", Help: "Issuer round trip, by outcome (answered, timeout, no_route).", Buckets: buckets,
	}, []string{"outcome"})
	JournalLatency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "shoudan_journal_commit_seconds", Help: "Durable journal commit (one group of writes).", Buckets: buckets,
	})
	JournalGroup = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "shoudan_journal_group_size", Help: "Writes made durable by one commit (group commit).", Buckets: prometheus.ExponentialBuckets(1, 2, 10),
	})
	ConnectedTerminals = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "shoudan_connected_terminals", Help: "Open terminal connections, by listener environment.",
	}, []string{"env"})
	FormatErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "shoudan_format_errors_total", Help: "Frames that did not decode (answered 30 or closed).",
	})
	LateAnswers = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "shoudan_issuer_late_answers_total", Help: "Issuer answers that arrived after their request timed out (never honoured; reversed).",
	})
	ConfigReloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "shoudan_config_reloads_total", Help: "Config reloads by result (applied, rejected).",
	}, []string{"result"})
	TLSHandshakeFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "shoudan_tls_handshake_failures_total", Help: "Terminal connections closed because their TLS handshake failed (plaintext, unknown CA, expired), by listener environment.",
	}, []string{"env"})
	SAFDelivered = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "shoudan_saf_reversals_total", Help: "Store-and-forward reversal attempts by result (acked, retry).",
	}, []string{"result"})
	ZoneKeyIndex = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "shoudan_zone_key_index", Help: "Index (F53) of the zone PIN key PIN blocks are translated to: 0 = issuer.zone_key, 1-99 = sent by a key change.",
	})
	ZoneKeyChanges = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "shoudan_zone_key_changes_total", Help: "Zone PIN key changes over the issuer link by result (done, failed).",
	}, []string{"result"})
)

func init() {
	Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		Transactions, RuleHits, TerminalLatency, IssuerLatency, JournalLatency, JournalGroup, ConnectedTerminals,
		FormatErrors, LateAnswers, ConfigReloads, SAFDelivered, Rejects, RejectsDropped, SignOns, Unauthenticated, TLSHandshakeFailures,
		ZoneKeyIndex, ZoneKeyChanges)
}

// Unauthenticated frames (issue 18).
var (
	Rejects = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "shoudan_rejects_total", Help: "Requests declined before authentication (protocol §7 rows 1-4): answered, changed nothing, recorded in rejects.",
	}, []string{"env", "rule", "code"})
	RejectsDropped = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "shoudan_rejects_dropped_total", Help: "Rejects not written to the rejects table because its queue was full (a flood).",
	})
	SignOns = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "shoudan_signons_total", Help: "Sign-ons by result: pending (keys issued, not yet proven), proven (first request MACed with them), refused (rate or address binding).",
	}, []string{"result"})
	Unauthenticated = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "shoudan_unauthenticated_alerts_total", Help: "Unauthenticated management messages worth an operator's look, by reason (new_address, rate, signoff_ignored, bound_address).",
	}, []string{"reason"})
)

// GaugeFunc registers a gauge read at scrape time (link state, queue depth and age).
// Registering a name again replaces the earlier function (a restarted app in the same process).
func GaugeFunc(name, help string, f func() float64) {
	g := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	Registry.Unregister(g)
	Registry.MustRegister(g)
}

// Handler serves the registry in the Prometheus exposition format.
func Handler() http.Handler { return promhttp.HandlerFor(Registry, promhttp.HandlerOpts{}) }
