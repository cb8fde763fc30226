package api

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-sec/vigil/internal/server/controlplane"
	"github.com/vigil-sec/vigil/internal/server/store"
	"github.com/vigil-sec/vigil/internal/ship"
)

type metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	batches  *prometheus.CounterVec
	alerts   *prometheus.CounterVec
	audit    *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_http_requests_total", Help: "API requests by route and status code."}, []string{"route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "vigil_http_request_duration_seconds", Help: "API request latency by route.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}}, []string{"route"}),
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_ingest_batches_total", Help: "Ingested batches, by whether they were duplicates of stored ones."}, []string{"duplicate"}),
		alerts:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_ingest_alerts_total", Help: "Alerts received in ingested batches, by severity."}, []string{"severity"}),
		audit: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_audit_events_total",
			Help: "Audit events received, by outcome: accepted, truncated (objects dropped, over the size limit), malformed, missing (required fields absent)."}, []string{"outcome"}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.latency, m.batches, m.alerts, m.audit)
	}
	return m
}

func (m *metrics) observe(route string, code int, d time.Duration) {
	m.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
	m.latency.WithLabelValues(route).Observe(d.Seconds())
}

func (m *metrics) ingested(res store.IngestResult, b *ship.Batch) {
	m.batches.WithLabelValues(strconv.FormatBool(res.Duplicate)).Inc()
	if res.Duplicate {
		return
	}
	for _, a := range b.Alerts {
		m.alerts.WithLabelValues(string(a.Severity)).Inc()
	}
}

func (m *metrics) audited(res controlplane.Result) {
	m.audit.WithLabelValues("accepted").Add(float64(res.Events))
	m.audit.WithLabelValues("truncated").Add(float64(res.Truncated))
	m.audit.WithLabelValues("malformed").Add(float64(res.Malformed))
	m.audit.WithLabelValues("missing").Add(float64(res.Missing))
}

func isTooLarge(err error) bool {
	var mbe *http.MaxBytesError
	return errors.As(err, &mbe) || errors.Is(err, ship.ErrTooLarge)
}
