package presenceprom

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// statsCollector is the one mechanism behind every collector here: on each
// scrape it reads the part's stats once, as an S, and turns each metric of
// its table into a constant metric.
type statsCollector[S any] struct {
	read    func() S
	metrics []metric[S]
}

// metric is one series of a collector: a counter, a gauge, or (with
// summary set) a summary without quantiles, of count and sum.
type metric[S any] struct {
	desc   *prometheus.Desc
	kind   prometheus.ValueType
	value  func(*S) float64
	labels []string // the label values, in the desc's order

	summary func(*S) (count uint64, sum float64)
	// present, if set, says whether the series exists in this scrape: a
	// timestamp of a last success has no value before one.
	present func(*S) bool
}

func (c *statsCollector[S]) Describe(ch chan<- *prometheus.Desc) {
	seen := map[*prometheus.Desc]bool{}
	for _, m := range c.metrics {
		if !seen[m.desc] {
			seen[m.desc] = true
			ch <- m.desc
		}
	}
}

func (c *statsCollector[S]) Collect(ch chan<- prometheus.Metric) {
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

func counter[S any](d *prometheus.Desc, v func(*S) uint64, labels ...string) metric[S] {
	return metric[S]{desc: d, kind: prometheus.CounterValue, value: func(s *S) float64 { return float64(v(s)) }, labels: labels}
}

func gauge[S any](d *prometheus.Desc, v func(*S) float64, labels ...string) metric[S] {
	return metric[S]{desc: d, kind: prometheus.GaugeValue, value: v, labels: labels}
}

func durations[S any](d *prometheus.Desc, v func(*S) (uint64, time.Duration)) metric[S] {
	return metric[S]{desc: d, summary: func(s *S) (uint64, float64) {
		n, sum := v(s)
		return n, sum.Seconds()
	}}
}

// timestamp is a gauge of a time as Unix seconds, absent while the time is
// zero.
func timestamp[S any](d *prometheus.Desc, v func(*S) time.Time) metric[S] {
	return sinceFirst(gauge(d, func(s *S) float64 { return float64(v(s).UnixNano()) / 1e9 }),
		func(s *S) bool { return !v(s).IsZero() })
}

// sinceFirst makes m absent from scrapes until present says otherwise.
func sinceFirst[S any](m metric[S], present func(*S) bool) metric[S] {
	m.present = present
	return m
}
