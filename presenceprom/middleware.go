package presenceprom

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/onlinenow/presence/presenceprom/internal/metrics"

	"github.com/onlinenow/presence/middleware"
)

// NewMiddlewareCollector returns a collector of the requests counted in c
// by the Track and Hold middleware given it with [middleware.WithCounters]:
// <namespace>_http_requests_total by result, holds started and open.
//
// It reads c when scraped and is safe for concurrent use.
func NewMiddlewareCollector(c *middleware.Counters, opts ...Option) prometheus.Collector {
	cf := newConfig(opts)
	type stats = middleware.CounterStats
	requests := cf.Desc("http", "requests_total", "Requests the middleware saw, by result: recorded (for a user), skipped (a skip rule), anonymous (no user), status (a status class not recorded).", "result")
	return metrics.New(c.Stats, []metrics.Metric[stats]{
		metrics.Counter(requests, func(s *stats) uint64 { return s.Recorded }, "recorded"),
		metrics.Counter(requests, func(s *stats) uint64 { return s.Skipped }, "skipped"),
		metrics.Counter(requests, func(s *stats) uint64 { return s.Anonymous }, "anonymous"),
		metrics.Counter(requests, func(s *stats) uint64 { return s.Status }, "status"),
		metrics.Counter(cf.Desc("http", "holds_total", "Long-lived requests Hold held a user for."), func(s *stats) uint64 { return s.Held }),
		metrics.Gauge(cf.Desc("http", "holds_open", "Long-lived requests open now."), func(s *stats) float64 { return float64(s.Open) }),
	}...)
}
