// Package redisprom exports the metrics of the Redis backend
// (redispresence) to Prometheus, as package presenceprom does those of the
// engine and the middleware; it is a module of its own, so that a program
// that uses the engine alone has no Redis client in its module graph.
//
//	reg.MustRegister(redisprom.NewCollector(store))
package redisprom

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/onlinenow/presence/presenceprom"
	"github.com/onlinenow/presence/presenceprom/internal/metrics"

	"github.com/onlinenow/presence/redispresence"
)

// NewCollector returns a collector of the Redis backend's metrics:
// touches taken, buffered and pending users, touches dropped on a full
// buffer, members sent, flushes (count, time, errors, last success) and
// users pruned, and IDs and room names refused.
//
// It calls s.Stats when scraped, which walks the write buffer, and is safe
// for concurrent use.
func NewCollector(s *redispresence.Store, opts ...presenceprom.Option) prometheus.Collector {
	c := metrics.NewConfig(opts)
	type stats = redispresence.Stats
	return metrics.New(s.Stats, []metrics.Metric[stats]{
		metrics.Counter(c.Desc("redis", "touches_total", "Touches the Store took."), func(s *stats) uint64 { return s.Touches }),
		metrics.Gauge(c.Desc("redis", "buffered_users", "Users in the write buffer."), func(s *stats) float64 { return float64(s.Buffered) }),
		metrics.Gauge(c.Desc("redis", "pending_users", "Buffered users with a change not yet written to Redis."), func(s *stats) float64 { return float64(s.Pending) }),
		metrics.Counter(c.Desc("redis", "dropped_touches_total", "Touches refused because the write buffer was full."), func(s *stats) uint64 { return s.Dropped }),
		metrics.Counter(c.Desc("redis", "sent_members_total", "Sorted-set members written to Redis."), func(s *stats) uint64 { return s.Sent }),
		metrics.Counter(c.Desc("redis", "flushes_total", "Successful flushes."), func(s *stats) uint64 { return s.Flushes }),
		metrics.Counter(c.Desc("redis", "write_errors_total", "Failed flushes and prunes."), func(s *stats) uint64 { return s.FlushErrors }),
		metrics.Durations(c.Desc("redis", "flush_duration_seconds", "Time flushes with something to send took, failed ones included."), func(s *stats) (uint64, time.Duration) {
			return s.FlushCalls, s.FlushTime
		}),
		metrics.Timestamp(c.Desc("redis", "last_flush_timestamp_seconds", "When the last successful flush ended, in Unix seconds."), func(s *stats) time.Time { return s.LastFlush }),
		metrics.Counter(c.Desc("redis", "rejected_ids_total", "Touches and holds refused for an empty or too long ID."), func(s *stats) uint64 { return s.RejectedIDs }),
		metrics.Counter(c.Desc("redis", "rejected_rooms_total", "Room touches and holds refused for an invalid room name."), func(s *stats) uint64 { return s.RejectedRooms }),
		metrics.Counter(c.Desc("redis", "pruned_users_total", "Users removed by Prune (and retention)."), func(s *stats) uint64 { return s.Pruned }),
	}...)
}
