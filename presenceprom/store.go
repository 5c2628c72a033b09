package presenceprom

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/onlinenow/presence/redispresence"
)

// NewStoreCollector returns a collector of the Redis backend's metrics:
// touches taken, buffered and pending users, touches dropped on a full
// buffer, members sent, flushes (count, time, errors, last success) and
// users trimmed by retention.
//
// It calls s.Stats when scraped, which walks the write buffer, and is safe
// for concurrent use.
func NewStoreCollector(s *redispresence.Store, opts ...Option) prometheus.Collector {
	c := newConfig(opts)
	type stats = redispresence.Stats
	return &statsCollector[stats]{read: s.Stats, metrics: []metric[stats]{
		counter(c.desc("redis", "touches_total", "Touches the Store took."), func(s *stats) uint64 { return s.Touches }),
		gauge(c.desc("redis", "buffered_users", "Users in the write buffer."), func(s *stats) float64 { return float64(s.Buffered) }),
		gauge(c.desc("redis", "pending_users", "Buffered users with a change not yet written to Redis."), func(s *stats) float64 { return float64(s.Pending) }),
		counter(c.desc("redis", "dropped_touches_total", "Touches refused because the write buffer was full."), func(s *stats) uint64 { return s.Dropped }),
		counter(c.desc("redis", "sent_members_total", "Sorted-set members written to Redis."), func(s *stats) uint64 { return s.Sent }),
		counter(c.desc("redis", "flushes_total", "Successful flushes."), func(s *stats) uint64 { return s.Flushes }),
		counter(c.desc("redis", "write_errors_total", "Failed flushes and trims."), func(s *stats) uint64 { return s.FlushErrors }),
		durations(c.desc("redis", "flush_duration_seconds", "Time flushes with something to send took, failed ones included."), func(s *stats) (uint64, time.Duration) {
			return s.FlushCalls, s.FlushTime
		}),
		timestamp(c.desc("redis", "last_flush_timestamp_seconds", "When the last successful flush ended, in Unix seconds."), func(s *stats) time.Time { return s.LastFlush }),
		counter(c.desc("redis", "trimmed_users_total", "Users removed by retention."), func(s *stats) uint64 { return s.Trimmed }),
	}}
}
