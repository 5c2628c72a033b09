package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/onlinenow/presence/redispresence/redistest"

	"github.com/onlinenow/presence"
	"github.com/onlinenow/presence/redispresence"
	"github.com/redis/go-redis/v9"
)

// fleetResult is what -nodes measures: N Stores in one process, each with
// its own Redis client, as N servers behind a load balancer would be.
type fleetResult struct {
	Nodes          int       `json:"nodes"`
	Procs          int       `json:"gomaxprocs"` // the nodes'; Redis has a core of its own where there are 2 or more
	Rooms          int       `json:"rooms"`
	Rate           float64   `json:"rate"` // -fleet-rate: touches/s offered in all; 0: as fast as the nodes go
	Seconds        float64   `json:"seconds"`
	TouchesPerNode []float64 `json:"touches_per_s_per_node"`
	Touches        float64   `json:"touches_per_s"`
	// Written is the ZADD members written to Redis (the users', rooms' and
	// room lists' sets, and the room index), resent ones included, per
	// touch; Commands the commands Redis processed (INFO stats) per touch.
	Written  float64 `json:"members_written_per_touch"`
	Commands float64 `json:"redis_commands_per_touch"`
	// Disagree is the largest difference between nodes' answers to the same
	// count asked at once (the global online count, and the busiest room's);
	// PerFlush how much that count grew in one flush interval, at most.
	Disagree     int `json:"global_disagreement"`
	PerFlush     int `json:"global_growth_per_flush"`
	RoomDisagree int `json:"room_disagreement"`
	RoomPerFlush int `json:"room_growth_per_flush"`
	// Events: Online and Join events received by every node's subscriber,
	// and the latency from the touch to each.
	Events int           `json:"events"`
	P50    time.Duration `json:"event_latency_p50_ns"`
	P99    time.Duration `json:"event_latency_p99_ns"`
	// What Redis holds (MEMORY USAGE of the keys) per user, and per
	// membership on top of it.
	BytesPerUser       float64 `json:"redis_bytes_per_user"`
	BytesPerMembership float64 `json:"redis_bytes_per_membership"`
	// Pending is the entries buffered with a change not yet sent, on all
	// nodes, as the load stopped; FlushMean a flush's mean time.
	Pending   int           `json:"pending_at_end"`
	FlushMean time.Duration `json:"flush_mean_ns"`
	Drain     time.Duration `json:"drain_ns"` // to send what was pending after the load stopped
}

const (
	fleetWindow  = 5 * time.Minute
	arrivalEvery = 100 // one touch in this many is of a user not seen before
)

// preload touches every user once, then puts each in its room, flushing
// after each, and measures what Redis holds per user and per membership:
// the sum of MEMORY USAGE of the keys each step wrote, per user.
func preload(addr string, users int, roomNames []string, roomOf []uint16, r *fleetResult) error {
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	s, err := redispresence.New(rdb, redispresence.WithPrefix("fleet"), redispresence.WithFlushInterval(time.Hour),
		redispresence.WithTimeout(5*time.Minute), redispresence.WithMaxBuffered(2*users+1))
	if err != nil {
		return err
	}
	defer s.Close(context.Background())
	ctx := context.Background()
	k := newKeys(users, "uniform", 1.1, 1)
	now := time.Now()
	for u := range users {
		s.TouchAt(k.id(u), now)
	}
	if err := s.Flush(ctx); err != nil {
		return err
	}
	alone, err := memoryUsage(rdb, "fleet:*")
	if err != nil {
		return err
	}
	for u := range users {
		s.TouchInAt(roomNames[roomOf[u]], k.id(u), now)
	}
	if err := s.Flush(ctx); err != nil {
		return err
	}
	all, err := memoryUsage(rdb, "fleet:*")
	if err != nil {
		return err
	}
	r.BytesPerUser, r.BytesPerMembership = float64(alone)/float64(users), float64(all-alone)/float64(users)
	return nil
}

// memoryUsage sums MEMORY USAGE (SAMPLES 0: every element) of the keys
// matching pattern.
func memoryUsage(rdb *redis.Client, pattern string) (int64, error) {
	ctx := context.Background()
	var keys []string
	iter := rdb.Scan(ctx, 0, pattern, 1000).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		return 0, err
	}
	pipe := rdb.Pipeline()
	cmds := make([]*redis.IntCmd, len(keys))
	for i, key := range keys {
		cmds[i] = pipe.MemoryUsage(ctx, key, 0)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, err
	}
	var sum int64
	for _, c := range cmds {
		sum += c.Val()
	}
	return sum, nil
}

// runFleet runs p.Nodes Stores against one redis-server: workers spread
// over the nodes touch users picked by p.Dist, each user in its own room
// (the rooms picked once per user by a Zipf law over p.FleetRooms, so a few
// rooms are crowded), for p.Duration.
func runFleet(p params, out io.Writer) (fleetResult, error) {
	t0 := time.Now()
	r := fleetResult{Nodes: p.Nodes, Rooms: p.FleetRooms, Rate: p.FleetRate}
	addr := p.Redis
	switch addr {
	case "off":
		return r, fmt.Errorf("-nodes needs Redis: -redis auto or an address")
	case "auto":
		srv, err := redistest.Run()
		if err != nil {
			return r, err
		}
		defer srv.Close()
		addr = srv.Addr()
	}
	admin := redis.NewClient(&redis.Options{Addr: addr})
	defer admin.Close()
	ctx := context.Background()
	if err := admin.Del(ctx, "fleet:sweeper").Err(); err != nil {
		return r, err
	}

	// The nodes share the cores but one, which Redis has: on a machine of
	// a few cores, nodes spinning on every core starve the one Redis
	// thread, which a fleet's Redis on its own machine is not.
	procs := max(1, runtime.NumCPU()-1)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
	r.Procs = procs
	roomOf := make([]uint16, p.Users)
	zr := rand.NewZipf(rand.New(rand.NewPCG(p.Seed, 7)), p.Skew, 1, uint64(p.FleetRooms-1))
	for i := range roomOf {
		roomOf[i] = uint16(zr.Uint64())
	}
	roomNames := make([]string, p.FleetRooms)
	for i := range roomNames {
		roomNames[i] = "room" + strconv.Itoa(i)
	}

	// Every user online at the start, as in a fleet that has run a while:
	// written by a Store without events, so no Online for them.
	if err := preload(addr, p.Users, roomNames, roomOf, &r); err != nil {
		return r, fmt.Errorf("preload: %w", err)
	}
	fmt.Fprintf(os.Stderr, "fleet: %d users preloaded in %s\n", p.Users, time.Since(t0).Round(time.Millisecond))

	stores := make([]*redispresence.Store, p.Nodes)
	lat := make([]hist, p.Nodes)
	var readers sync.WaitGroup
	for n := range stores {
		rdb := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 8})
		defer rdb.Close()
		s, err := redispresence.New(rdb, redispresence.WithPrefix("fleet"), redispresence.WithOnlineWindow(fleetWindow), redispresence.WithEvents())
		if err != nil {
			return r, err
		}
		defer s.Close(ctx)
		stores[n] = s
		sub, err := s.Subscribe(ctx, 1<<16)
		if err != nil {
			return r, err
		}
		readers.Add(1)
		go func() {
			defer readers.Done()
			for e := range sub.Events() {
				if e.Kind == presence.Online || e.Kind == presence.Join {
					lat[n].record(time.Since(e.At))
				}
			}
		}()
	}
	cmds0, err := commandsProcessed(admin)
	if err != nil {
		return r, err
	}

	touches := make([]atomic.Int64, p.Nodes)
	stop := make(chan struct{})
	var workers sync.WaitGroup
	nw := max(p.Workers, p.Nodes)
	// Each worker keeps to its share of -fleet-rate: every 256 touches it
	// sleeps until the time they were due.
	var every time.Duration
	if p.FleetRate > 0 {
		every = time.Duration(float64(time.Second) * 256 * float64(nw) / p.FleetRate)
	}
	began := time.Now()
	for w := range nw {
		n := w % p.Nodes
		workers.Add(1)
		go func() {
			defer workers.Done()
			k := newKeys(p.Users, p.Dist, p.Skew, p.Seed+uint64(w)+1)
			s := stores[n]
			for i := 0; ; i++ {
				if i%256 == 0 {
					select {
					case <-stop:
						return
					default:
					}
					if every > 0 {
						time.Sleep(time.Until(began.Add(time.Duration(i/256) * every)))
					}
				}
				u := k.next()
				if i%arrivalEvery == 0 {
					// A user arriving: an Online and a Join for every node.
					s.TouchInAt(roomNames[roomOf[u]], "w"+strconv.Itoa(w)+"-"+strconv.Itoa(i), time.Now())
				} else {
					s.TouchInAt(roomNames[roomOf[u]], k.id(u), time.Now())
				}
				touches[n].Add(1)
			}
		}()
	}

	// Every 250ms ask every node the same two counts at once.
	busiest := roomNames[0] // Zipf rank 1
	var sample struct{ global, room []int }
	sampler := make(chan error, 1)
	go func() {
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				sampler <- nil
				return
			case <-t.C:
			}
			g, rm := make([]int, p.Nodes), make([]int, p.Nodes)
			var wg sync.WaitGroup
			var failed atomic.Value
			for n, s := range stores {
				wg.Add(1)
				go func() {
					defer wg.Done()
					var err error
					if g[n], err = s.Count(ctx, fleetWindow); err == nil {
						rm[n], err = s.Room(busiest).Count(ctx, fleetWindow)
					}
					if err != nil {
						failed.Store(err)
					}
				}()
			}
			wg.Wait()
			if err, _ := failed.Load().(error); err != nil {
				sampler <- err
				return
			}
			spread := func(xs []int) (lo, hi int) {
				lo, hi = xs[0], xs[0]
				for _, x := range xs {
					lo, hi = min(lo, x), max(hi, x)
				}
				return lo, hi
			}
			glo, ghi := spread(g)
			rlo, rhi := spread(rm)
			r.Disagree, r.RoomDisagree = max(r.Disagree, ghi-glo), max(r.RoomDisagree, rhi-rlo)
			sample.global, sample.room = append(sample.global, glo), append(sample.room, rlo)
		}
	}()
	start := time.Now()
	fmt.Fprintf(os.Stderr, "fleet: set up in %s\n", time.Since(t0).Round(time.Millisecond))
	time.Sleep(p.Duration)
	close(stop)
	workers.Wait()
	r.Seconds = time.Since(start).Seconds()
	if err := <-sampler; err != nil {
		return r, err
	}
	// Growth per flush interval (1s = 4 samples), at most.
	growth := func(xs []int) int {
		g := 0
		for i := 4; i < len(xs); i++ {
			g = max(g, xs[i]-xs[i-4])
		}
		return g
	}
	r.PerFlush, r.RoomPerFlush = growth(sample.global), growth(sample.room)

	fmt.Fprintf(os.Stderr, "fleet: run ended after %s\n", time.Since(t0).Round(time.Millisecond))
	var total, written uint64
	var flushTime time.Duration
	var flushCalls uint64
	drain := time.Now()
	for n, s := range stores {
		st := s.Stats()
		r.Pending += st.Pending
		flushTime += st.FlushTime
		flushCalls += st.FlushCalls
		// A backlog Redis did not keep up with can take flushes that time
		// out while the other nodes flush theirs: try again, for a while.
		for err := s.Flush(ctx); err != nil; err = s.Flush(ctx) {
			if time.Since(drain) > 2*time.Minute {
				return r, err
			}
		}
		st = s.Stats()
		total += st.Touches
		written += st.Sent + st.Resent
		r.TouchesPerNode = append(r.TouchesPerNode, float64(touches[n].Load())/r.Seconds)
		r.Touches += float64(touches[n].Load()) / r.Seconds
	}
	r.Drain = time.Since(drain)
	cmds1, err := commandsProcessed(admin)
	if err != nil {
		return r, err
	}
	r.Written = float64(written) / float64(total)
	if flushCalls > 0 {
		r.FlushMean = flushTime / time.Duration(flushCalls)
	}
	r.Commands = float64(cmds1-cmds0) / float64(total)
	// Let the readers take the last flushes' events, then stop them.
	time.Sleep(200 * time.Millisecond)
	for _, s := range stores {
		s.Close(ctx)
	}
	readers.Wait()
	var all hist
	for n := range lat {
		all.merge(&lat[n])
	}
	r.Events, r.P50, r.P99 = int(all.n), all.quantile(0.5), all.quantile(0.99)
	return r, nil
}

func commandsProcessed(c *redis.Client) (int64, error) {
	info, err := c.InfoMap(context.Background(), "stats").Result()
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(info["Stats"]["total_commands_processed"], 10, 64)
}

func printFleet(out io.Writer, r fleetResult) {
	fmt.Fprintf(out, "fleet: %d nodes (a Store and a Redis client each, sharing GOMAXPROCS %d) on one redis-server, %d rooms, %.1fs\n", r.Nodes, r.Procs, r.Rooms, r.Seconds)
	for n, t := range r.TouchesPerNode {
		fmt.Fprintf(out, "  node %d: %s touches/s\n", n, si(t))
	}
	paced := "as fast as the nodes go"
	if r.Rate > 0 {
		paced = "paced at " + si(r.Rate) + "/s (-fleet-rate)"
	}
	fmt.Fprintf(out, "  all:    %s touches/s, %s\n", si(r.Touches), paced)
	fmt.Fprintf(out, "  Redis writes per touch: %.4f ZADD members (goal <= 0.05), %.4f commands\n", r.Written, r.Commands)
	fmt.Fprintf(out, "  Redis holds %.0f bytes per user and %.0f more per membership (MEMORY USAGE)\n", r.BytesPerUser, r.BytesPerMembership)
	fmt.Fprintf(out, "  flushes: %s on average; %d entries pending on all nodes when the load stopped, sent in %s\n",
		r.FlushMean.Round(time.Millisecond), r.Pending, r.Drain.Round(time.Millisecond))
	fmt.Fprintf(out, "  largest disagreement between nodes: global count %d (it grew up to %d in one flush interval), busiest room %d (grew up to %d)\n",
		r.Disagree, r.PerFlush, r.RoomDisagree, r.RoomPerFlush)
	fmt.Fprintf(out, "  event latency, touch to each node's subscriber: p50 %s, p99 %s (%d Online and Join events)\n",
		r.P50.Round(time.Millisecond), r.P99.Round(time.Millisecond), r.Events)
}
