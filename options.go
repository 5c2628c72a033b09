package presence

import (
	"log/slog"
	"math/bits"
	"runtime"
	"time"
)

// Limits on what the engine stores. Longer IDs are rejected by Touch and
// TouchAt (and counted in [Stats].RejectedIDs); longer meta by SetMeta.
const (
	MaxIDLen   = 512
	MaxMetaLen = 1024
	// MaxDataLen is the most bytes of data a connection (Enter) carries.
	MaxDataLen = 4096
)

// DefaultMaxRoomsPerUser is how many rooms one user may be in unless
// [WithMaxRoomsPerUser] says otherwise: more than any page, chat or
// document list shows at once, and few enough that a client making up room
// names cannot grow the engine (or a snapshot record) without bound.
const DefaultMaxRoomsPerUser = 1000

const (
	defaultResolution   = time.Second
	defaultOnlineWindow = 5 * time.Minute
	defaultHoldGrace    = 5 * time.Second
	minResolution       = time.Millisecond
	maxResolution       = 24 * time.Hour
	maxShards           = 1024
	minHorizon          = 4096    // slots; the counters' coarsest block
	maxHorizon          = 1 << 17 // slots: 36 hours at the default resolution
	expireBudget        = 32      // users a write may expire while it holds a lock
	pruneBatch          = 1024    // users Prune removes per lock hold
	pageBatch           = 256     // users Since reads per lock hold
	maxExpected         = 1 << 30 // the largest map WithExpectedUsers or a snapshot sizes
)

// Option configures an [Engine], for [New] and [Open]. Options are applied
// in order; values out of range are corrected as each option documents.
type Option func(*config)

func (o Option) applyOpen(c *openConfig) { o(&c.config) }

// OpenOption configures [Open]: every [Option] is one, and so are the
// options of the snapshot file, which New does not accept
// ([WithSnapshotInterval], [WithStartEmptyOnCorrupt],
// [WithErrorHandler]).
type OpenOption interface{ applyOpen(*openConfig) }

type config struct {
	shards       int
	resolution   time.Duration
	retention    time.Duration
	maxUsers     int
	expected     int
	now          func() time.Time
	maxRooms     int
	perUser      int  // WithMaxRoomsPerUser
	countTouches bool // WithTouchCount

	onlineWindow time.Duration
	grace        time.Duration
	logger       *slog.Logger
}

// fill applies the defaults and corrections, after the options.
func (c *config) fill() {
	if c.shards <= 0 {
		c.shards = 4 * runtime.GOMAXPROCS(0)
	}
	c.shards = min(1<<bits.Len(uint(c.shards-1)), maxShards)
	if c.resolution <= 0 {
		c.resolution = defaultResolution
	}
	c.resolution = min(max(c.resolution, minResolution), maxResolution)
	c.retention = max(c.retention, 0)
	c.maxUsers = max(c.maxUsers, 0)
	c.expected = min(max(c.expected, 0), maxExpected)
	c.maxRooms = max(c.maxRooms, 0)
	switch {
	case c.perUser == 0:
		c.perUser = DefaultMaxRoomsPerUser
	case c.perUser < 0:
		c.perUser = 0 // no cap
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.onlineWindow <= 0 {
		c.onlineWindow = defaultOnlineWindow
	}
	if c.grace <= 0 {
		c.grace = defaultHoldGrace
	}
	c.onlineWindow = max(c.onlineWindow, c.resolution)
	c.grace = max(c.grace, c.resolution)
}

// WithShards sets the number of index shards, rounded up to a power of two
// (at most 1024; n <= 0 selects 4 x GOMAXPROCS). Each has its own lock,
// B-tree and slot counters: more shards mean less contention on index moves
// and more work per query. A shard costs about 9 KiB, and 16 KiB more for
// each block of 4096 slots (68 minutes at 1s) in which it holds users.
func WithShards(n int) Option { return func(c *config) { c.shards = n } }

// WithResolution sets the granularity of the time index (default 1s; at
// least 1ms and at most 24h; d <= 0 selects the default). A user's index
// entry moves at most once per resolution, so a coarser resolution makes
// Touch cheaper; window queries are exact to the resolution.
func WithResolution(d time.Duration) Option { return func(c *config) { c.resolution = d } }

// WithRetention makes the engine forget users idle for longer than d, to the
// resolution: a user stays while its slot is no older than the slot of now
// minus d, by the engine's clock. d <= 0 (the default) keeps users until
// Forget, Prune or eviction. Expired users leave every query at once and are
// gone as if forgotten (a later Touch brings one back without meta); their
// memory is reclaimed a few at a time by later writes, or by [Engine.Prune].
func WithRetention(d time.Duration) Option { return func(c *config) { c.retention = d } }

// WithMaxUsers caps the number of users held. A new user beyond the cap
// evicts the least recently seen users first. Zero (the default) or a
// negative n means no cap.
func WithMaxUsers(n int) Option { return func(c *config) { c.maxUsers = n } }

// WithExpectedUsers sizes the user map for n users up front (at most 2^30;
// n <= 0, the default, sizes nothing), instead of letting it double its way
// there, rehashing every user each time while inserts wait. Loading a
// snapshot into an engine made by New gains most; [Open] sizes the map for
// its snapshot by itself. The map costs 17 to 34 bytes per expected user.
func WithExpectedUsers(n int) Option { return func(c *config) { c.expected = n } }

// WithClock sets the clock Touch, retention and the window queries read; nil
// selects time.Now. The slot counters follow it: a TouchAt time more than
// 1/64 of their horizon ahead (34 minutes at 1s without retention) is
// counted apart until the clock comes near.
func WithClock(now func() time.Time) Option { return func(c *config) { c.now = now } }

// WithMaxRooms caps the number of rooms. A member joining a new room beyond
// the cap ends the least recently active room first, with all its
// memberships. Zero (the default) or a negative n means no cap.
func WithMaxRooms(n int) Option { return func(c *config) { c.maxRooms = n } }

// WithMaxRoomsPerUser caps the rooms one user is in (default
// [DefaultMaxRoomsPerUser]). A user joining a room beyond the cap leaves
// the room it was least recently active in. Zero selects the default; a
// negative n means no cap, which lets one user (one client of an
// application that names rooms after its requests' paths) make memberships
// without bound. Enforcing it costs a join beyond the cap O(n).
func WithMaxRoomsPerUser(n int) Option { return func(c *config) { c.perUser = n } }

// WithOnlineWindow sets how long after a user was last seen it stays online,
// for [Engine.Online] and the Online and Offline events (default 5m; at
// least the resolution; d <= 0 selects the default). Like every window, it
// is exact to the resolution. Rooms' Join and Leave follow it too.
func WithOnlineWindow(d time.Duration) Option { return func(c *config) { c.onlineWindow = d } }

// WithHoldGrace sets how long after the last release of a hold
// ([Engine.Hold]) a user not seen since goes offline (default 5s, so that a
// page reload is not an Offline and an Online; at least the resolution;
// d <= 0 selects the default).
func WithHoldGrace(d time.Duration) Option { return func(c *config) { c.grace = d } }

// WithLogger makes the engine log its background work to l: failed
// snapshot saves (with the path) and the corrupt file Open moved aside, at
// level Error; each save, at Debug; events the sweeper's subscribers lost
// by falling behind, at Warn. Nil, the default, logs nothing.
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// WithTouchCount makes the engine count every touch exactly, for
// [Stats].Touches. It is off by default because the hot path is a map probe
// and a compare-and-swap, and even a per-P counter adds a third to that
// (BENCHMARKS.md, Core); a server that wants a request rate can count its
// requests where it handles them (the middleware's Counters do, per P).
func WithTouchCount() Option { return func(c *config) { c.countTouches = true } }
