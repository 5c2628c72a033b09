package main

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/onlinenow/presence"
	"github.com/onlinenow/presence/redispresence"
	"github.com/redis/go-redis/v9"
)

// peer is one way of answering "who is online": this library, or what a
// user would pick instead. Its methods are safe for concurrent use.
type peer interface {
	// worker returns the touch path of one worker goroutine.
	worker() touchWorker
	count(since time.Time) (int, error)
	recent(since time.Time, limit int) (int, error) // how many it returned
	close() error
}

// touchWorker records touches for one goroutine; flush sends anything it
// buffered (Redis pipelines).
type touchWorker interface {
	touch(id string, at time.Time)
	flush() error
}

// enginePeer is this library.
type enginePeer struct{ e *presence.Engine }

func (p enginePeer) worker() touchWorker                { return p }
func (p enginePeer) touch(id string, at time.Time)      { p.e.TouchAt(id, at) }
func (p enginePeer) flush() error                       { return nil }
func (p enginePeer) count(since time.Time) (int, error) { return p.e.CountSince(since), nil }
func (p enginePeer) close() error                       { return p.e.Close() }
func (p enginePeer) recent(since time.Time, limit int) (int, error) {
	page, _ := p.e.Page(since, presence.Cursor{}, limit)
	return len(page), nil
}

// naivePeer is what a user writes by hand: one mutex around a map, and a
// scan plus a sort for the window queries.
type naivePeer struct {
	mu   sync.Mutex
	last map[string]int64
}

func newNaive() *naivePeer { return &naivePeer{last: map[string]int64{}} }

func (p *naivePeer) worker() touchWorker { return p }
func (p *naivePeer) flush() error        { return nil }
func (p *naivePeer) close() error        { return nil }

func (p *naivePeer) touch(id string, at time.Time) {
	ns := at.UnixNano()
	p.mu.Lock()
	if old, ok := p.last[id]; !ok {
		p.last[string([]byte(id))] = ns // the id aliases a reused buffer
	} else if ns > old {
		p.last[id] = ns
	}
	p.mu.Unlock()
}

func (p *naivePeer) count(since time.Time) (int, error) {
	s := since.UnixNano()
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, ns := range p.last {
		if ns >= s {
			n++
		}
	}
	return n, nil
}

func (p *naivePeer) recent(since time.Time, limit int) (int, error) {
	type kv struct {
		id string
		ns int64
	}
	s := since.UnixNano()
	var hits []kv
	p.mu.Lock()
	for id, ns := range p.last {
		if ns >= s {
			hits = append(hits, kv{id, ns})
		}
	}
	p.mu.Unlock()
	slices.SortFunc(hits, func(a, b kv) int { return int(b.ns - a.ns) })
	return min(len(hits), limit), nil
}

// redisPeer is django-active-users' approach: a write to Redis per request,
// here ZADD into one sorted set, each worker with its own pipeline.
type redisPeer struct {
	c     *redis.Client
	key   string
	depth int
}

func newRedisPeer(addr string, depth, workers int) (*redisPeer, error) {
	c := redis.NewClient(&redis.Options{Addr: addr, PoolSize: workers + 4})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		c.Close()
		return nil, err
	}
	p := &redisPeer{c: c, key: "presence-bench", depth: max(depth, 1)}
	return p, c.Del(ctx, p.key).Err()
}

func (p *redisPeer) worker() touchWorker {
	return &redisWorker{p: p, pipe: p.c.Pipeline()}
}

func (p *redisPeer) count(since time.Time) (int, error) {
	n, err := p.c.ZCount(context.Background(), p.key, strconv.FormatInt(since.UnixNano(), 10), "+inf").Result()
	return int(n), err
}

func (p *redisPeer) recent(since time.Time, limit int) (int, error) {
	ids, err := p.c.ZRevRangeByScore(context.Background(), p.key, &redis.ZRangeBy{
		Min: strconv.FormatInt(since.UnixNano(), 10), Max: "+inf", Count: int64(limit),
	}).Result()
	return len(ids), err
}

func (p *redisPeer) close() error {
	err := p.c.Del(context.Background(), p.key).Err()
	return errors.Join(err, p.c.Close())
}

type redisWorker struct {
	p    *redisPeer
	pipe redis.Pipeliner
	err  error
}

func (w *redisWorker) touch(id string, at time.Time) {
	// Scores are float64: nanoseconds keep 53 bits, microsecond precision
	// today; django-active-users stores seconds.
	w.pipe.ZAdd(context.Background(), w.p.key, redis.Z{Score: float64(at.UnixNano()), Member: string([]byte(id))})
	if w.pipe.Len() >= w.p.depth {
		w.flushErr()
	}
}

func (w *redisWorker) flushErr() {
	if _, err := w.pipe.Exec(context.Background()); err != nil && w.err == nil {
		w.err = err
	}
}

func (w *redisWorker) flush() error {
	if w.pipe.Len() > 0 {
		w.flushErr()
	}
	return w.err
}

// backendPeer is this library's Redis backend: touches go to a local
// buffer, and a flusher sends one ZADD member per changed user per second.
type backendPeer struct {
	s   *redispresence.Store
	rdb *redis.Client
}

func newBackendPeer(addr string, workers int) (*backendPeer, error) {
	c := redis.NewClient(&redis.Options{Addr: addr, PoolSize: workers + 4})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := c.FlushDB(ctx).Err(); err != nil {
		c.Close()
		return nil, err
	}
	s, err := redispresence.New(c, redispresence.WithPrefix("presence-bench-backend"))
	if err != nil {
		c.Close()
		return nil, err
	}
	return &backendPeer{s: s, rdb: c}, nil
}

func (p *backendPeer) worker() touchWorker           { return p }
func (p *backendPeer) touch(id string, at time.Time) { p.s.TouchAt(id, at) }

// flush sends what is buffered, so that a phase's time includes the writes
// its touches caused.
func (p *backendPeer) flush() error { return p.s.Flush(context.Background()) }

func (p *backendPeer) count(since time.Time) (int, error) {
	return p.s.Count(context.Background(), time.Since(since))
}

func (p *backendPeer) recent(since time.Time, limit int) (int, error) {
	page, _, err := p.s.Page(context.Background(), time.Since(since), "", limit)
	return len(page), err
}

func (p *backendPeer) close() error {
	err := p.s.Close(context.Background())
	p.rdb.FlushDB(context.Background())
	return errors.Join(err, p.rdb.Close())
}

// usedMemory returns INFO memory's used_memory, in bytes.
func usedMemory(c *redis.Client) (int64, error) {
	info, err := c.InfoMap(context.Background(), "memory").Result()
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(info["Memory"]["used_memory"], 10, 64)
}
