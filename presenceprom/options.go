package presenceprom

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Option configures a collector.
type Option func(*config)

type config struct {
	namespace string
	labels    prometheus.Labels
	windows   []window
}

type window struct {
	name string
	d    time.Duration
}

func newConfig(opts []Option) config {
	c := config{namespace: "presence"}
	for _, o := range opts {
		o(&c)
	}
	return c
}

// WithNamespace sets the first part of every metric's name (default
// "presence"; "" leaves names without one).
func WithNamespace(ns string) Option { return func(c *config) { c.namespace = ns } }

// WithConstLabels adds labels with fixed values to every metric, such as
// the name of the engine when a process has several.
func WithConstLabels(l prometheus.Labels) Option {
	return func(c *config) {
		if c.labels == nil {
			c.labels = prometheus.Labels{}
		}
		for k, v := range l {
			c.labels[k] = v
		}
	}
}

// WithWindow makes the engine's collector export the users active within
// d as <namespace>_active_users{window="name"}. Repeat it for more
// windows; a name given twice keeps the last d. Without it no window is
// exported (<namespace>_online_users follows the engine's online window
// either way).
func WithWindow(name string, d time.Duration) Option {
	return func(c *config) {
		for i := range c.windows {
			if c.windows[i].name == name {
				c.windows[i].d = d
				return
			}
		}
		c.windows = append(c.windows, window{name, d})
	}
}

// desc returns a metric's description under the collector's namespace.
func (c *config) desc(subsystem, name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(prometheus.BuildFQName(c.namespace, subsystem, name), help, labels, c.labels)
}
