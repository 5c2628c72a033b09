package redispresence

import (
	"log/slog"
	"time"
)

// Option configures a Store.
type Option func(*config)

type config struct {
	prefix      string
	keys        int
	interval    time.Duration
	timeout     time.Duration
	maxBuffered int
	retention   time.Duration
	maxRooms    int
	perUser     int
	window      time.Duration // WithOnlineWindow
	events      bool          // WithEvents
	poll        time.Duration
	streamLen   int
	onError     func(error)
	now         func() time.Time
	log         *slog.Logger
}

// WithPrefix sets the prefix of the Redis keys (default "presence").
func WithPrefix(p string) Option { return func(c *config) { c.prefix = p } }

// WithShards sets how many shards (sorted sets, each with its keys) the
// users are spread over (default 16), as the engine's option does.
// Every Store sharing the data must use the same number.
func WithShards(k int) Option { return func(c *config) { c.keys = k } }

// WithOnlineWindow sets how recently a user must have been seen to be
// online (default 5m), as the engine's option does: for [Store.Online]
// and for the events. Every Store sharing the data must use the same.
func WithOnlineWindow(d time.Duration) Option { return func(c *config) { c.window = d } }

// WithFlushInterval sets how often buffered touches are sent (default 1s).
func WithFlushInterval(d time.Duration) Option { return func(c *config) { c.interval = d } }

// WithTimeout bounds each flush, prune and query (default 2s; a flush gets
// 10µs more for each member it writes); a call's own context may end it
// sooner. See the package documentation for how it bounds a call whatever
// the client's options.
func WithTimeout(d time.Duration) Option { return func(c *config) { c.timeout = d } }

// WithMaxBuffered bounds how many users the buffer holds while Redis is
// unreachable (default 1,000,000). Touches of users not already buffered
// beyond it are dropped and counted in Stats.Dropped.
func WithMaxBuffered(n int) Option { return func(c *config) { c.maxBuffered = n } }

// WithRetention makes the Store prune users idle longer than d from Redis
// every minute (0, the default, keeps them).
func WithRetention(d time.Duration) Option { return func(c *config) { c.retention = d } }

// WithMaxRooms caps the number of rooms, as the engine's option does: a
// flush that makes rooms beyond the cap ends the least recently active
// rooms, with their memberships. Zero (the default) means no cap. Every
// Store sharing the data should use the same cap.
func WithMaxRooms(n int) Option { return func(c *config) { c.maxRooms = max(n, 0) } }

// WithMaxRoomsPerUser caps the rooms one user is in: a flush that puts a
// user in more leaves the rooms it joined first (by the time of the touch
// that brought it into a Store's buffer, which is when the user's room
// list is written; the engine leaves the least recently active). Zero (the
// default) means no cap.
func WithMaxRoomsPerUser(n int) Option { return func(c *config) { c.perUser = max(n, 0) } }

// WithErrorHandler sets a function called with each failed background
// flush or prune (the engine's option of this name gets its failed
// saves). It must not block for long.
func WithErrorHandler(f func(error)) Option { return func(c *config) { c.onError = f } }

// WithClock sets the clock the Store reads: for pruning (what retention
// keeps and when the flusher prunes) and for when a flushed user has been
// idle long enough to leave the buffer; nil selects time.Now.
func WithClock(now func() time.Time) Option { return func(c *config) { c.now = now } }

// WithLogger makes the flusher log to l: failed flushes and prunes at Error
// (with the keys involved), and the first good flush after failures at
// Info. Nil, the default, logs nothing.
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.log = l } }
