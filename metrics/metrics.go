// Package metrics holds pushbackd's Prometheus metrics in their own registry (not the
// global one, so tests and several instances in one process never collide) and the small
// methods the gateway, the dispatcher and the reloader call to move them.
package metrics

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pushbackd/pushbackd/saga"
	"github.com/pushbackd/pushbackd/security"
)

// Metrics is every metric pushbackd exports.
type Metrics struct {
	reg           *prometheus.Registry
	requests      *prometheus.CounterVec
	authFailures  *prometheus.CounterVec
	runs          *prometheus.CounterVec
	duplicates    *prometheus.CounterVec
	stepDuration  *prometheus.HistogramVec
	storeLatency  *prometheus.HistogramVec
	reloadSuccess prometheus.Gauge
	reloadTime    prometheus.Gauge
	queueLimit    prometheus.Gauge
	// codes are the status label values 100-599, formatted once: strconv.Itoa allocates
	// for every number above 99, and every answer, a guess's 401 too, is counted.
	codes [600]string

	// Resolved series of the two counters every answer touches. WithLabelValues hashes
	// and looks up the labels under the vector's lock each time; these caches hold the same
	// series the vectors do (no more: both grow only through here), so they are bounded as
	// the labels are, by the configuration.
	requestSet  seriesCache[requestLabels]
	authFailSet seriesCache[authLabels]
}

// seriesCache maps labels to their resolved counter. A sync.Map, not a map under a
// RWMutex: its reads of settled keys write nothing shared, where every RLock is an atomic
// add on one cache line that both cores of a busy server keep taking from each other.
type seriesCache[K comparable] struct{ m sync.Map }

func (c *seriesCache[K]) load(key K) prometheus.Counter {
	if v, ok := c.m.Load(key); ok {
		return v.(prometheus.Counter)
	}
	return nil
}

// store caches counter as key's, unless another goroutine did first, and returns the one
// cached.
func (c *seriesCache[K]) store(key K, counter prometheus.Counter) prometheus.Counter {
	v, _ := c.m.LoadOrStore(key, counter)
	return v.(prometheus.Counter)
}

type requestLabels struct {
	partner, endpoint string
	code              int
	reason            string
}

type authLabels struct {
	partner, site, endpoint string
	method                  security.Method
	reason                  security.Reason
}

// New registers the metrics; queueDepth is read at scrape time.
func New(queueDepth func() int) *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		reg: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushbackd_requests_total",
			Help: "Pushback requests by partner, endpoint, answer status and reason (schema: the body failed the endpoint's schema; unparseable: the body could not be parsed; empty otherwise). Requests to unknown endpoints count under empty labels, so a scanner cannot grow the label set.",
		}, []string{"partner", "endpoint", "code", "reason"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushbackd_auth_failures_total",
			Help: "Failed authentications by endpoint, security method and reason.",
		}, []string{"partner", "site", "endpoint", "method", "reason"}),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushbackd_runs_total",
			Help: "Saga runs that reached a final status, by partner, endpoint, saga and status (succeeded, failed, compensated, compensation_failed, superseded, ...). compensation_failed: a compensation did not succeed, so the run may have left something half-undone. superseded: a newer run with its debounce key replaced it before it started. cancelled: an operator cancelled it (POST /admin/v1/runs/{id}/cancel) and the steps it had completed were undone.",
		}, []string{"partner", "endpoint", "saga", "status"}),
		duplicates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushbackd_duplicates_total",
			Help: "Requests answered as duplicates of an accepted run (same idempotency key or webhook-id while it lives), by partner and endpoint. Nothing runs or is recorded for them.",
		}, []string{"partner", "endpoint"}),
		stepDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "pushbackd_step_duration_seconds",
			Help:    "Duration of saga steps (all tries), by saga, action and step status.",
			Buckets: []float64{.001, .005, .01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"saga", "action", "status"}),
		storeLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "pushbackd_store_commit_seconds",
			Help:    "Time to durably record a run (create) or its progress (update), fsync included.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .25, 1},
		}, []string{"op"}),
		reloadSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pushbackd_config_last_reload_successful",
			Help: "1 if the last configuration load succeeded, 0 if it failed (the previous configuration keeps serving).",
		}),
		reloadTime: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pushbackd_config_last_reload_success_timestamp_seconds",
			Help: "Unix time of the last successful configuration load.",
		}),
		queueLimit: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pushbackd_queue_limit",
			Help: "Runnable runs the store may hold (limits.queue) before accepts are refused with 503: alert on pushbackd_queue_depth nearing it.",
		}),
	}
	reg.MustRegister(m.queueLimit, m.requests, m.authFailures, m.runs, m.duplicates, m.stepDuration, m.storeLatency, m.reloadSuccess, m.reloadTime,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "pushbackd_queue_depth",
			Help: "Runnable runs in the store: queued, or waiting (a debounce window, a suspended retry wait, or parked behind an earlier run with their serialize_by key).",
		}, func() float64 { return float64(queueDepth()) }),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	for c := 100; c < len(m.codes); c++ {
		m.codes[c] = strconv.Itoa(c)
	}
	return m
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Request counts one answered pushback; reason is "" or a gateway Reason constant.
func (m *Metrics) Request(partner, endpoint string, code int, reason string) {
	key := requestLabels{partner, endpoint, code, reason}
	c := m.requestSet.load(key)
	if c == nil {
		label := strconv.Itoa(code)
		if code >= 100 && code < len(m.codes) {
			label = m.codes[code]
		}
		c = m.requestSet.store(key, m.requests.WithLabelValues(partner, endpoint, label, reason))
	}
	c.Inc()
}

// AuthFailure counts one failed authentication.
func (m *Metrics) AuthFailure(partner, site, endpoint string, method security.Method, reason security.Reason) {
	key := authLabels{partner, site, endpoint, method, reason}
	c := m.authFailSet.load(key)
	if c == nil {
		c = m.authFailSet.store(key, m.authFailures.WithLabelValues(partner, site, endpoint, string(method), string(reason)))
	}
	c.Inc()
}

// RunFinished counts a run's final status under the endpoint that accepted it (so an
// alert can name the failing endpoint, not only the saga several endpoints share) and
// observes its steps' durations.
func (m *Metrics) RunFinished(partner, endpoint string, res *saga.Result) {
	// Step durations first, the run last: a scrape that sees the run counted sees its steps.
	for _, st := range res.Steps {
		if st.Status == saga.StatusSkipped {
			continue
		}
		m.stepDuration.WithLabelValues(res.Saga, st.Action, st.Status).Observe(st.Duration.Seconds())
	}
	m.runs.WithLabelValues(partner, endpoint, res.Saga, res.Status).Inc()
}

// Duplicate counts one request answered as a duplicate.
func (m *Metrics) Duplicate(partner, endpoint string) {
	m.duplicates.WithLabelValues(partner, endpoint).Inc()
}

// Superseded counts runs a newer one superseded: final, without RunFinished. They count
// under the newer run's partner and endpoint (see dispatch.Observer.Superseded).
func (m *Metrics) Superseded(partner, endpoint, sagaName string, n int) {
	m.runs.WithLabelValues(partner, endpoint, sagaName, "superseded").Add(float64(n))
}

// StoreCommit observes how long a durable write took.
func (m *Metrics) StoreCommit(op string, d time.Duration) {
	m.storeLatency.WithLabelValues(op).Observe(d.Seconds())
}

// QueueLimit records the queue's size limit, for pushbackd_queue_depth to be read against.
func (m *Metrics) QueueLimit(n int) { m.queueLimit.Set(float64(n)) }

// Reload records a configuration load's outcome.
func (m *Metrics) Reload(ok bool, at time.Time) {
	if !ok {
		m.reloadSuccess.Set(0)
		return
	}
	m.reloadSuccess.Set(1)
	m.reloadTime.Set(float64(at.Unix()))
}
