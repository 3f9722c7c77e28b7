package platform

import (
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// A call's outcome: the "outcome" label of capbus_calls_total.
type outcome uint8

const (
	outcomeOK          outcome = iota // the callee answered with a result
	outcomeError                      // the callee answered with an error
	outcomeDenied                     // the policy or the call hook refused it
	outcomeRefused                    // the platform could not route it (no such method, bad arguments, ...)
	outcomeOverloaded                 // a queue, budget or in-flight bound was full
	outcomeTimeout                    // its deadline passed before the reply
	outcomeUnavailable                // the callee left before replying
	outcomeCancelled                  // the caller left before the reply
	outcomeNotify                     // a notify, forwarded (no reply expected)
	numOutcomes
)

// outcomeNames are the label values of the outcomes.
var outcomeNames = [numOutcomes]string{"ok", "error", "denied", "refused", "overloaded", "timeout",
	"unavailable", "cancelled", "notify"}

// maxMethodSeries bounds the (callee, method) pairs with series of their
// own; the calls of further pairs are counted under callee and method
// "_other", so that peers exporting ever new names cannot grow the
// platform's memory without bound.
const maxMethodSeries = 1000

// otherLabel stands for the callees and methods beyond maxMethodSeries,
// and for calls to no known callee or method.
const otherLabel = "_other"

// metrics are the platform's Prometheus metrics, in a registry of its own
// (no global state). Counters that the platform keeps anyway (stats) are
// read at scrape time; the others are incremented where things happen.
type metrics struct {
	reg *prometheus.Registry

	handshakes *prometheus.CounterVec // outcome
	calls      *prometheus.CounterVec // callee, method, outcome
	callTime   prometheus.Histogram
	reloads    *prometheus.CounterVec // result

	published, delivered, pubDropped atomic.Uint64

	mu     sync.Mutex
	series map[[2]string]*methodMetrics
	other  *methodMetrics
}

// methodMetrics are the call counters of one callee method, one per
// outcome, resolved once so that counting a call is one atomic add.
type methodMetrics struct {
	byOutcome [numOutcomes]prometheus.Counter
}

func (m *methodMetrics) inc(o outcome) {
	if m != nil {
		m.byOutcome[o].Inc()
	}
}

func newMetrics(p *Platform) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		handshakes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "capbus_handshakes_total",
			Help: "CURVE handshakes by outcome: ok, refused (key not admitted), busy (a connection limit or the host's failure backoff), replayed_hello, bad_box, timeout, malformed, too_many_pending, other.",
		}, []string{"outcome"}),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "capbus_calls_total",
			Help: "RPC calls by callee identity, method and outcome: ok, error, denied, refused, overloaded, timeout, unavailable, cancelled, notify.",
		}, []string{"callee", "method", "outcome"}),
		callTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "capbus_call_duration_seconds",
			Help:    "Time from forwarding a call to forwarding its reply, as the platform sees it.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 4, 10), // 50 us to 13 s
		}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "capbus_policy_reloads_total",
			Help: "Reloads of auth.json by result: ok (installed) or rejected (invalid; the policy in force was kept).",
		}, []string{"result"}),
		series: make(map[[2]string]*methodMetrics),
	}
	m.other = m.method(otherLabel, otherLabel)
	counter := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f)
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	u64 := func(v *atomic.Uint64) func() float64 { return func() float64 { return float64(v.Load()) } }
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.handshakes, m.calls, m.callTime, m.reloads,
		gauge("capbus_connections", "Connections open now (welcomed or not).", func() float64 {
			p.mu.RLock()
			defer p.mu.RUnlock()
			return float64(len(p.conns))
		}),
		gauge("capbus_connections_pre_hello", "Connections that have not said hello yet.", func() float64 {
			p.mu.RLock()
			defer p.mu.RUnlock()
			return float64(p.preHello)
		}),
		counter("capbus_connections_refused_total", "Handshakes refused for a connection limit.", u64(&p.stats.refusedConns)),
		counter("capbus_slow_consumers_total", "Connections closed because they did not read what was sent to them.", u64(&p.stats.slowConsumers)),
		gauge("capbus_queued_bytes", "Bytes queued towards all connections, waiting for their sockets.", func() float64 { return float64(p.queued.Load()) }),
		counter("capbus_dropped_messages_total", "Messages dropped for a full queue or memory budget (deliveries, broadcasts, platform replies).", u64(&p.stats.dropped)),
		counter("capbus_unmatched_replies_total", "Replies that answered no call awaiting one, dropped.", u64(&p.stats.unmatchedReplies)),
		counter("capbus_pubsub_published_total", "Messages published (allowed).", u64(&m.published)),
		counter("capbus_pubsub_delivered_total", "Deliveries of published messages to subscribers.", u64(&m.delivered)),
		counter("capbus_pubsub_dropped_total", "Deliveries dropped for a subscriber's full queue or budget.", u64(&m.pubDropped)),
		gauge("capbus_subscriptions", "Subscriptions (pattern, connection) on the platform.", func() float64 { return float64(p.subs.Len()) }),
		gauge("capbus_policy_generation", "Generation of the policy in force (bumped by every installed reload).", func() float64 {
			return float64(p.policy().Generation())
		}),
		counter("capbus_audit_write_errors_total", "Audit records that could not be written.", u64(&p.stats.auditWriteErrors)),
	)
	return m
}

// method returns the counters of callee's method, creating them within
// the bound of maxMethodSeries.
func (m *metrics) method(callee, method string) *methodMetrics {
	k := [2]string{callee, method}
	m.mu.Lock()
	defer m.mu.Unlock()
	if mm := m.series[k]; mm != nil {
		return mm
	}
	if len(m.series) >= maxMethodSeries && m.other != nil {
		return m.other
	}
	mm := &methodMetrics{}
	for o, name := range outcomeNames {
		mm.byOutcome[o] = m.calls.WithLabelValues(callee, method, name)
	}
	m.series[k] = mm
	return mm
}

// handshake counts one handshake's outcome (the curve listener's kinds).
func (m *metrics) handshake(outcome string) {
	m.handshakes.WithLabelValues(outcome).Inc()
}

// MetricsHandler serves the platform's metrics in the Prometheus text
// format (docs/METRICS.md lists them). The admin endpoint serves it at
// /metrics (WithAdmin).
func (p *Platform) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(p.metrics.reg, promhttp.HandlerOpts{})
}
