package presenceprom

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/onlinenow/presence/presenceprom/internal/metrics"

	"github.com/onlinenow/presence"
)

// engineStats is what one scrape reads of an engine.
type engineStats struct {
	presence.Stats
	online int
	active []int // by window, in the order of the options
}

// NewCollector returns a collector of e's metrics: users, online and
// active users, touches (for an engine made with
// [presence.WithTouchCount]; otherwise count requests with
// [NewMiddlewareCollector]), index moves, users added and removed (by reason),
// rejected IDs and room names, rooms and memberships, snapshots (saves,
// errors, time, size, last success) and events (published, lost,
// subscribers). Register it on the registry that serves them.
//
// It reads e when scraped and is safe for concurrent use.
func NewCollector(e *presence.Engine, opts ...Option) prometheus.Collector {
	c := newConfig(opts)
	windows := c.Windows
	removed := c.Desc("", "users_removed_total", "Users removed from the engine, by reason: evicted (WithMaxUsers), expired (retention), forgotten (Forget), pruned (Prune).", "reason")
	m := []metrics.Metric[engineStats]{
		metrics.Gauge(c.Desc("", "users", "Users the engine holds."), func(s *engineStats) float64 { return float64(s.Users) }),
		metrics.Gauge(c.Desc("", "online_users", "Users online: held, or seen within the online window."), func(s *engineStats) float64 { return float64(s.online) }),
		metrics.Counter(c.Desc("", "users_added_total", "Users added to the engine."), func(s *engineStats) uint64 { return s.Inserted }),
		metrics.Counter(c.Desc("", "index_moves_total", "Index moves: a known user's time entered a new slot."), func(s *engineStats) uint64 { return s.Moved }),
		metrics.Counter(removed, func(s *engineStats) uint64 { return s.Evicted }, "evicted"),
		metrics.Counter(removed, func(s *engineStats) uint64 { return s.Expired }, "expired"),
		metrics.Counter(removed, func(s *engineStats) uint64 { return s.Forgotten }, "forgotten"),
		metrics.Counter(removed, func(s *engineStats) uint64 { return s.Pruned }, "pruned"),
		metrics.Counter(c.Desc("", "rejected_ids_total", "Touches refused for an empty, too long or invalid ID."), func(s *engineStats) uint64 { return s.RejectedIDs }),
		metrics.Gauge(c.Desc("", "rooms", "Rooms with members."), func(s *engineStats) float64 { return float64(s.Rooms) }),
		metrics.Gauge(c.Desc("", "room_memberships", "Members of all rooms."), func(s *engineStats) float64 { return float64(s.Memberships) }),
		metrics.Counter(c.Desc("", "rooms_ended_total", "Rooms ended to stay within WithMaxRooms."), func(s *engineStats) uint64 { return s.RoomsEnded }),
		metrics.Counter(c.Desc("", "rejected_rooms_total", "Room touches refused for an invalid room name."), func(s *engineStats) uint64 { return s.RejectedRooms }),
		metrics.Counter(c.Desc("", "snapshot_saves_total", "Snapshots saved."), func(s *engineStats) uint64 { return s.SnapshotsSaved }),
		metrics.Counter(c.Desc("", "snapshot_errors_total", "Snapshot saves that failed."), func(s *engineStats) uint64 { return s.SnapshotErrors }),
		metrics.Durations(c.Desc("", "snapshot_duration_seconds", "Time spent saving snapshots, failed saves included."), func(s *engineStats) (uint64, time.Duration) {
			return s.SnapshotsSaved + s.SnapshotErrors, s.SnapshotTime
		}),
		metrics.Timestamp(c.Desc("", "snapshot_last_success_timestamp_seconds", "When the last successful snapshot save ended, in Unix seconds."), func(s *engineStats) time.Time { return s.LastSnapshot }),
		metrics.SinceFirst(metrics.Gauge(c.Desc("", "snapshot_size_bytes", "Size of the last snapshot saved."), func(s *engineStats) float64 { return float64(s.LastSnapshotBytes) }),
			func(s *engineStats) bool { return !s.LastSnapshot.IsZero() }),
		metrics.Gauge(c.Desc("", "event_subscribers", "Open event subscriptions."), func(s *engineStats) float64 { return float64(s.Subscribers) }),
		metrics.Counter(c.Desc("", "events_total", "Events published, each counted once."), func(s *engineStats) uint64 { return s.Events }),
		metrics.Counter(c.Desc("", "events_dropped_total", "Events subscribers lost by falling behind, summed over subscribers."), func(s *engineStats) uint64 { return s.EventsDropped }),
	}
	if e.Stats().TouchesCounted {
		m = append(m, metrics.Counter(c.Desc("", "touches_total", "Touches recorded (Touch, TouchAt, TouchIn, TouchInAt, Hold)."), func(s *engineStats) uint64 { return s.Touches }))
	}
	if len(windows) > 0 {
		active := c.Desc("", "active_users", "Users seen within the window the label names.", "window")
		for i, w := range windows {
			m = append(m, metrics.Gauge(active, func(s *engineStats) float64 { return float64(s.active[i]) }, w.Name))
		}
	}
	return metrics.New(func() engineStats {
		s := engineStats{Stats: e.Stats(), online: e.Online(), active: make([]int, len(windows))}
		for i, w := range windows {
			s.active[i] = e.Count(w.D)
		}
		return s
	}, m...)
}
