package redispresence

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"hash/maphash"
	"math"
	"math/bits"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/onlinenow/presence"
	"github.com/puzpuzpuz/xsync/v3"
	"github.com/redis/go-redis/v9"
)

// Stats counts a Store's work.
type Stats struct {
	Touches     uint64 // TouchAt calls accepted
	Sent        uint64 // ZADD members sent to Redis, not counting Resent
	Buffered    int    // users in the buffer now
	Pending     int    // of which with a change not yet sent
	Dropped     uint64 // touches refused because the buffer was full
	Flushes     uint64 // successful flushes
	FlushErrors uint64 // failed flushes and prunes
	Pruned      uint64 // users removed by Prune (which retention calls)

	RejectedIDs   uint64 // touches and holds refused for an invalid ID
	RejectedRooms uint64 // room touches and holds refused for an invalid room name

	FlushCalls uint64        // flushes that had something to send, successful or failed
	Resent     uint64        // ZADD members sent again after a failed flush or a connection to a new master
	FlushTime  time.Duration // time those spent
	LastFlush  time.Time     // when the last successful flush ended; zero before one
}

// entryKey names a buffer entry: a user (room "") or a membership.
type entryKey struct{ room, id string }

var entrySeed = maphash.MakeSeed()

// hashEntry mixes two string hashes: the runtime's hash of a struct of
// strings costs more.
func hashEntry(k entryKey, _ uint64) uint64 {
	return maphash.String(entrySeed, k.id) ^ bits.RotateLeft64(maphash.String(entrySeed, k.room), 29)
}

// pending is one buffered user or membership. ns is the newest time touched; sent the
// newest time Redis acknowledged. ns is deadNS once the entry has left the
// buffer, which sends a late TouchAt holding it to insert a new one.
type pending struct {
	ns       atomic.Int64
	sent     atomic.Int64
	meta     atomic.Pointer[string]
	metaSent atomic.Pointer[string]
}

const (
	deadNS    = math.MinInt64
	neverSent = math.MinInt64 + 1 // sent of an entry not flushed yet
)

// Store is the Redis backend. It is safe for concurrent use; its buffer is
// lock-light (a concurrent map and atomics), and one goroutine flushes.
type Store struct {
	cfg config
	rdb redis.UniversalClient
	buf *xsync.MapOf[entryKey, *pending]
	n   atomic.Int64 // entries in buf

	userKeys []string // the users' sorted sets, by shardOf
	ev       *events  // nil without WithEvents

	heldMu sync.Mutex
	held   map[entryKey]*holds // this Store's holds

	node  string     // this Store, random: its sweeper lease's and its connections'
	conns connWriter // see conns.go

	touches                                     *xsync.Counter // striped: TouchAt from many cores does not contend
	sent, dropped, flushes, flushErrors, pruned atomic.Uint64
	rejectedIDs, rejectedRooms                  atomic.Uint64
	flushCalls, resent                          atomic.Uint64
	// resend asks the next flush to send the two last good flushes' own
	// times again: set by a failed flush and by a connection to a new address (a
	// failover or a restart may have lost writes Redis acknowledged but did
	// not replicate; the connection may have been dialed during the last
	// flush, after the one it lost). last and prev are those batches, per
	// set, without what they resent themselves, so they stay two
	// intervals' worth; the flusher's own. A resend leaves out what a
	// tombstone says was removed since (see goneFor), and batches older.
	resend                atomic.Bool
	last, prev            map[setRef][]redis.Z
	batchAt               [2]int64 // when last and prev were sent, µs by the clock
	flushNanos, lastFlush atomic.Int64

	ctxTimeouts bool        // the client was made with ContextTimeoutEnabled: see bounded
	work        chan func() // to idle workers of bounded: see spawn

	flushMu   sync.Mutex      // one flush at a time
	ctx       context.Context // cancelled by Close: stops the loop and its flush
	cancel    context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once
}

// New returns a Store writing to rdb and starts its flusher. It checks that
// Redis answers (within the timeout) and supports ZADD GT (Redis 6.2+).
func New(rdb redis.UniversalClient, opts ...Option) (*Store, error) {
	c := config{prefix: "presence", keys: 16, interval: time.Second, window: 5 * time.Minute, timeout: 2 * time.Second, maxBuffered: 1_000_000, now: time.Now,
		poll: 50 * time.Millisecond, streamLen: 100_000}
	for _, o := range opts {
		o(&c)
	}
	if c.keys <= 0 || c.keys > 4096 {
		return nil, fmt.Errorf("redispresence: WithShards(%d): want 1 to 4096", c.keys)
	}
	if c.interval <= 0 || c.timeout <= 0 || c.maxBuffered <= 0 || c.poll <= 0 || c.streamLen <= 0 || c.window <= 0 {
		return nil, errors.New("redispresence: interval, timeout, max buffered, event poll, stream length and online window must be positive")
	}
	if c.now == nil {
		c.now = time.Now
	}
	s := &Store{
		cfg: c, rdb: rdb, buf: xsync.NewMapOfWithHasher[entryKey, *pending](hashEntry),
		touches: xsync.NewCounter(), done: make(chan struct{}), held: map[entryKey]*holds{},
		work: make(chan func()), node: newNode(),
		conns: connWriter{wake: make(chan struct{}, 1), done: make(chan struct{})},
	}
	for k := range c.keys {
		s.userKeys = append(s.userKeys, s.key(k))
	}
	switch c := rdb.(type) {
	case *redis.Client: // a FailoverClient's too
		s.ctxTimeouts = c.Options().ContextTimeoutEnabled
	case *redis.ClusterClient:
		s.ctxTimeouts = c.Options().ContextTimeoutEnabled
	case *redis.Ring:
		s.ctxTimeouts = c.Options().ContextTimeoutEnabled
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	probe := s.key(0) + ":probe"
	if err := rdb.ZAddGT(ctx, probe, redis.Z{Score: 1, Member: "x"}).Err(); err != nil {
		return nil, fmt.Errorf("redispresence: Redis must answer ZADD GT (6.2+): %w", err)
	}
	rdb.Del(ctx, probe)
	s.watchDials()
	s.ctx, s.cancel = context.WithCancel(context.Background())
	go s.loop()
	go s.writeConns()
	if c.events {
		s.ev = newEvents(s)
		s.ev.wg.Add(1)
		go s.ev.sweeper()
	}
	return s, nil
}

// watchDials makes a first connection to an address of Redis, from now on,
// ask the next flush to send the two last batches again: after a failover
// go-redis dials the new master, which may lack the old one's last writes
// (replication is asynchronous). ZADD GT makes the second write harmless
// where it was not lost. A cluster client's nodes are watched each, those
// it has and those it finds later (a promoted replica). A Redis restarted
// at the same address is not a new one: what it lost is resent only if a
// flush failed meanwhile.
func (s *Store) watchDials() {
	h := &dialWatch{s: s}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.timeout)
	defer cancel()
	switch c := s.rdb.(type) {
	case *redis.ClusterClient:
		c.OnNewNode(func(n *redis.Client) { n.AddHook(h) })
		// A PING each, so that the masters known now are not new later.
		c.ForEachShard(ctx, func(ctx context.Context, n *redis.Client) error { n.AddHook(h); return n.Ping(ctx).Err() })
	default:
		s.rdb.AddHook(h)
		s.rdb.Ping(ctx)
	}
}

// dialWatch asks for a resend when go-redis dials an address it had not:
// a new master. A new connection to a known one (a pool growing, a
// reconnect after a network error) is none, which keeps a resend from
// writing back, needlessly, a membership another Store's Leave removed.
type dialWatch struct {
	s    *Store
	seen sync.Map // addresses dialed
}

func (w *dialWatch) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := next(ctx, network, addr)
		if err == nil {
			if _, known := w.seen.LoadOrStore(addr, true); !known {
				w.s.resend.Store(true)
			}
		}
		return conn, err
	}
}
func (*dialWatch) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (*dialWatch) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// key is sorted set n's name; metaKey its meta hash's.
func (s *Store) key(n int) string     { return s.cfg.prefix + ":{" + strconv.Itoa(n) + "}" }
func (s *Store) metaKey(n int) string { return s.cfg.prefix + ":meta:{" + strconv.Itoa(n) + "}" }

// shardOf picks a user's set by a CRC-32C of the ID: every Store sharing
// the data must agree, so the hash is fixed, not seeded per process.
func (s *Store) shardOf(id string) int {
	return int(crc32.Checksum(unsafe.Slice(unsafe.StringData(id), len(id)), castagnoli) % uint32(s.cfg.keys))
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Touch records activity by id now, by the Store's clock; see
// [Store.TouchAt].
func (s *Store) Touch(id string) { s.TouchAt(id, s.cfg.now()) }

// TouchAt records activity by id at the given time in the local buffer; the
// flusher sends it. It never blocks on Redis. An invalid ID
// ([presence.ValidID]) is ignored and counted in Stats.RejectedIDs; the
// zero time is ignored.
func (s *Store) TouchAt(id string, at time.Time) {
	if !s.acceptID(id) || at.IsZero() {
		return
	}
	s.touches.Inc()
	s.raise(entryKey{id: id}, at.UnixNano())
}

// acceptID reports whether id is valid, counting it in Stats.RejectedIDs
// if not.
func (s *Store) acceptID(id string) bool {
	if presence.ValidID(id) {
		return true
	}
	s.rejectedIDs.Add(1)
	return false
}

// raise sets k's buffered time to ns unless it is newer already: for an
// entry buffered, one map probe and a CAS.
func (s *Store) raise(k entryKey, ns int64) {
	for {
		p, ok := s.buf.Load(k)
		if !ok {
			if !s.insert(k, ns) {
				continue // raced with a removal; try again
			}
			return
		}
		cur := p.ns.Load()
		for cur != deadNS && ns > cur && !p.ns.CompareAndSwap(cur, ns) {
			cur = p.ns.Load()
		}
		if cur != deadNS {
			return
		}
	}
}

// insert adds a buffer entry for k, or raises one added meanwhile. It
// returns false if it found a dead entry (the caller retries).
func (s *Store) insert(k entryKey, ns int64) bool {
	// A room's name is checked when its membership enters the buffer, not
	// at every touch of it.
	if k.room != "" && !presence.ValidRoom(k.room) {
		s.rejectedRooms.Add(1)
		return true
	}
	if s.n.Load() >= int64(s.cfg.maxBuffered) {
		s.dropped.Add(1)
		return true
	}
	ok := true
	// A copy for the map to keep: the caller's strings may alias a buffer it
	// reuses (a request's bytes).
	s.buf.Compute(entryKey{strings.Clone(k.room), strings.Clone(k.id)}, func(old *pending, loaded bool) (*pending, bool) {
		if loaded {
			if old.ns.Load() == deadNS {
				ok = false
				return old, false
			}
			for cur := old.ns.Load(); ns > cur && !old.ns.CompareAndSwap(cur, ns); cur = old.ns.Load() {
			}
			return old, false
		}
		p := new(pending)
		p.ns.Store(ns)
		p.sent.Store(neverSent)
		s.n.Add(1)
		return p, false
	})
	return ok
}

// drop removes k's entry from the buffer, and reports whether it held one.
// A TouchAt racing with it either lands before (and is dropped) or inserts
// a new entry.
func (s *Store) drop(k entryKey) bool {
	p, ok := s.buf.LoadAndDelete(k)
	if ok {
		p.ns.Store(deadNS)
		s.n.Add(-1)
	}
	return ok
}

// SetMeta buffers meta for a user touched through this Store; it is sent
// with the next flush. It returns false for a user not in the buffer or
// meta longer than presence.MaxMetaLen.
func (s *Store) SetMeta(id, meta string) bool {
	if len(meta) > presence.MaxMetaLen {
		return false
	}
	p, ok := s.buf.Load(entryKey{id: id})
	if !ok || p.ns.Load() == deadNS {
		return false
	}
	if cur := p.meta.Load(); cur != nil && *cur == meta {
		return true
	}
	m := strings.Clone(meta)
	p.meta.Store(&m)
	return true
}

// Stats returns the Store's counters. Buffered and Pending walk the buffer.
func (s *Store) Stats() Stats {
	st := Stats{
		Touches: uint64(s.touches.Value()), Sent: s.sent.Load(), Dropped: s.dropped.Load(),
		Flushes: s.flushes.Load(), FlushErrors: s.flushErrors.Load(), Pruned: s.pruned.Load(),
		RejectedIDs: s.rejectedIDs.Load(), RejectedRooms: s.rejectedRooms.Load(),
		FlushCalls: s.flushCalls.Load(), Resent: s.resent.Load(), FlushTime: time.Duration(s.flushNanos.Load()),
	}
	if ns := s.lastFlush.Load(); ns != 0 {
		st.LastFlush = time.Unix(0, ns).UTC()
	}
	s.buf.Range(func(_ entryKey, p *pending) bool {
		if ns := p.ns.Load(); ns != deadNS {
			st.Buffered++
			if ns != p.sent.Load() || p.meta.Load() != p.metaSent.Load() {
				st.Pending++
			}
		}
		return true
	})
	return st
}

// Close stops the flusher and sends what is pending, within ctx. It returns
// the last flush's error; nothing of the Store runs after it. It is
// idempotent (later calls return nil). It does not close the Redis client.
func (s *Store) Close(ctx context.Context) error {
	var err error
	s.closeOnce.Do(func() {
		s.cancel()
		<-s.done
		<-s.conns.done
		connErr := s.flushConns(ctx)
		if s.ev != nil {
			// A reader starting now (under startMu) sees the context
			// cancelled: none starts after this.
			s.ev.startMu.Lock()
			s.ev.startMu.Unlock()
			s.ev.wg.Wait()
			s.ev.hub.Close()
		}
		err = errors.Join(connErr, s.Flush(ctx))
	})
	return err
}

var _ presence.Backend = (*Store)(nil)

// newNode returns a random name for a Store.
func newNode() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
