// Package metrics is the machinery of presenceprom's collectors, shared
// with the collector of the Redis backend in its own module: a collector
// reads a part's stats once per scrape and turns a table of metrics into
// constant metrics.
package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Config is what a collector's options set.
type Config struct {
	Namespace string
	Labels    prometheus.Labels
	Windows   []Window
}

// Window is an active-users window: its label value and length.
type Window struct {
	Name string
	D    time.Duration
}

// NewConfig applies opts (presenceprom's Options) to the defaults.
func NewConfig[O ~func(*Config)](opts []O) Config {
	c := Config{Namespace: "presence"}
	for _, o := range opts {
		o(&c)
	}
	return c
}

// Desc returns a metric's description under the collector's namespace.
func (c *Config) Desc(subsystem, name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(prometheus.BuildFQName(c.Namespace, subsystem, name), help, labels, c.Labels)
}

// New returns a collector that calls read once per scrape.
func New[S any](read func() S, metrics ...Metric[S]) prometheus.Collector {
	return &Collector[S]{read: read, metrics: metrics}
}

// Collector is the one mechanism behind every collector here: on each
// scrape it reads the part's stats once, as an S, and turns each metric of
// its table into a constant metric.
type Collector[S any] struct {
	read    func() S
	metrics []Metric[S]
}

// Metric is one series of a collector: a counter, a gauge, or (with
// summary set) a summary without quantiles, of count and sum.
type Metric[S any] struct {
	desc   *prometheus.Desc
	kind   prometheus.ValueType
	value  func(*S) float64
	labels []string // the label values, in the desc's order

	summary func(*S) (count uint64, sum float64)
	// present, if set, says whether the series exists in this scrape: a
	// timestamp of a last success has no value before one.
	present func(*S) bool
}

// Describe implements prometheus.Collector.
func (c *Collector[S]) Describe(ch chan<- *prometheus.Desc) {
	seen := map[*prometheus.Desc]bool{}
	for _, m := range c.metrics {
		if !seen[m.desc] {
			seen[m.desc] = true
			ch <- m.desc
		}
	}
}

// Collect implements prometheus.Collector.
func (c *Collector[S]) Collect(ch chan<- prometheus.Metric) {
	s := c.read()
	for _, m := range c.metrics {
		switch {
		case m.present != nil && !m.present(&s):
		case m.summary != nil:
			n, sum := m.summary(&s)
			ch <- prometheus.MustNewConstSummary(m.desc, n, sum, nil, m.labels...)
		default:
			ch <- prometheus.MustNewConstMetric(m.desc, m.kind, m.value(&s), m.labels...)
		}
	}
}

// Counter is a counter of v, with the label values labels.
func Counter[S any](d *prometheus.Desc, v func(*S) uint64, labels ...string) Metric[S] {
	return Metric[S]{desc: d, kind: prometheus.CounterValue, value: func(s *S) float64 { return float64(v(s)) }, labels: labels}
}

// Gauge is a gauge of v, with the label values labels.
func Gauge[S any](d *prometheus.Desc, v func(*S) float64, labels ...string) Metric[S] {
	return Metric[S]{desc: d, kind: prometheus.GaugeValue, value: v, labels: labels}
}

// Durations is a summary of count and total time, without quantiles.
func Durations[S any](d *prometheus.Desc, v func(*S) (uint64, time.Duration)) Metric[S] {
	return Metric[S]{desc: d, summary: func(s *S) (uint64, float64) {
		n, sum := v(s)
		return n, sum.Seconds()
	}}
}

// Timestamp is a gauge of a time as Unix seconds, absent while the time is
// zero.
func Timestamp[S any](d *prometheus.Desc, v func(*S) time.Time) Metric[S] {
	return SinceFirst(Gauge(d, func(s *S) float64 { return float64(v(s).UnixNano()) / 1e9 }),
		func(s *S) bool { return !v(s).IsZero() })
}

// SinceFirst makes m absent from scrapes until present says otherwise.
func SinceFirst[S any](m Metric[S], present func(*S) bool) Metric[S] {
	m.present = present
	return m
}
