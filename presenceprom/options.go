package presenceprom

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/onlinenow/presence/presenceprom/internal/metrics"
)

// Option configures a collector.
type Option func(*metrics.Config)

func newConfig(opts []Option) metrics.Config { return metrics.NewConfig(opts) }

// WithNamespace sets the first part of every metric's name (default
// "presence"; "" leaves names without one).
func WithNamespace(ns string) Option { return func(c *metrics.Config) { c.Namespace = ns } }

// WithConstLabels adds labels with fixed values to every metric, such as
// the name of the engine when a process has several.
func WithConstLabels(l prometheus.Labels) Option {
	return func(c *metrics.Config) {
		if c.Labels == nil {
			c.Labels = prometheus.Labels{}
		}
		for k, v := range l {
			c.Labels[k] = v
		}
	}
}

// WithWindow makes the engine's collector export the users active within
// d as <namespace>_active_users{window="name"}. Repeat it for more
// windows; a name given twice keeps the last d. Without it no window is
// exported (<namespace>_online_users follows the engine's online window
// either way).
func WithWindow(name string, d time.Duration) Option {
	return func(c *metrics.Config) {
		for i := range c.Windows {
			if c.Windows[i].Name == name {
				c.Windows[i].D = d
				return
			}
		}
		c.Windows = append(c.Windows, metrics.Window{Name: name, D: d})
	}
}
