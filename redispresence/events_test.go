package redispresence_test

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"maps"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/onlinenow/presence"
	"github.com/onlinenow/presence/redispresence"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// clock is a settable clock shared by the Stores of a test.
type clock struct{ ns atomic.Int64 }

func newClock() *clock                     { c := new(clock); c.ns.Store(t0.UnixNano()); return c }
func (c *clock) now() time.Time            { return time.Unix(0, c.ns.Load()) }
func (c *clock) add(d time.Duration)       { c.ns.Add(int64(d)) }
func (c *clock) opt() redispresence.Option { return redispresence.WithClock(c.now) }

const window = time.Minute

// eventStores makes n Stores with events sharing rdb and the clock, each
// subscribed; the tests flush and sweep by hand.
func eventStores(t *testing.T, rdb redis.UniversalClient, clk *clock, n int, opts ...redispresence.Option) ([]*redispresence.Store, []*presence.Subscription) {
	var stores []*redispresence.Store
	var subs []*presence.Subscription
	for range n {
		s := newStore(t, rdb, append([]redispresence.Option{clk.opt(), redispresence.WithOnlineWindow(window), redispresence.WithEvents(),
			redispresence.WithEventPoll(5 * time.Millisecond)}, opts...)...)
		sub, err := s.Subscribe(context.Background(), 0)
		require.NoError(t, err)
		stores, subs = append(stores, s), append(subs, sub)
	}
	return stores, subs
}

// ev is an event as the tests compare them.
type ev struct {
	kind     presence.EventKind
	id, room string
}

func (e ev) String() string { return fmt.Sprintf("%s %s %s", e.kind, e.id, e.room) }

// expect reads events from every subscription and checks that each got
// the want events, in any order across users but in order per user and
// room, and nothing else. It publishes a marker user, reads every
// subscription up to its Online, then a second: a poll reads the second
// only after the poll that read the first, so after every event written
// before the first.
func expect(t *testing.T, clk *clock, s *redispresence.Store, subs []*presence.Subscription, want ...ev) {
	t.Helper()
	got := make([][]ev, len(subs))
	for range 2 {
		m := fmt.Sprint("marker-", markers.Add(1))
		s.TouchAt(m, clk.now())
		require.NoError(t, s.Flush(context.Background()))
		for i, sub := range subs {
			got[i] = append(got[i], readUntil(t, sub, m)...)
		}
	}
	for i := range subs {
		assert.Equal(t, perKey(want), perKey(got[i]), "subscription %d", i)
	}
}

var markers atomic.Int64

// perKey groups events by user and room, keeping their order.
func perKey(es []ev) map[string][]ev {
	out := map[string][]ev{}
	for _, e := range es {
		out[e.id+"/"+e.room] = append(out[e.id+"/"+e.room], e)
	}
	return out
}

// readUntil reads up to marker's Online and returns the events before it.
func readUntil(t *testing.T, sub *presence.Subscription, marker string) []ev {
	t.Helper()
	var got []ev
	var seen []presence.Event
	for {
		select {
		case e := <-sub.Events():
			if e.ID == marker {
				return got
			}
			seen = append(seen, e)
			if len(e.ID) < 7 || e.ID[:7] != "marker-" {
				got = append(got, ev{e.Kind, e.ID, e.Room})
			}
		case <-time.After(10 * time.Second):
			require.FailNow(t, "marker missing", "%s; read %v", marker, seen)
		}
	}
}

func flushAll(t *testing.T, stores ...*redispresence.Store) {
	t.Helper()
	for _, s := range stores {
		require.NoError(t, s.Flush(context.Background()))
	}
}

func TestEventsAcrossStores(t *testing.T) {
	for _, top := range topologies {
		t.Run(top.name, func(t *testing.T) {
			rdb := top.open(t)
			clk := newClock()
			stores, subs := eventStores(t, rdb, clk, 3)
			a, b := stores[0], stores[1]
			ctx := context.Background()

			a.TouchAt("u1", clk.now())
			b.TouchInAt("doc", "u2", clk.now())
			b.TouchAt("u1", clk.now().Add(-time.Second)) // online already, on another Store
			flushAll(t, a, b)
			expect(t, clk, a, subs, ev{presence.Online, "u1", ""}, ev{presence.Online, "u2", ""}, ev{presence.Join, "u2", "doc"})

			clk.add(30 * time.Second)
			b.TouchAt("u1", clk.now())
			a.TouchAt("old", clk.now().Add(-2*window)) // seen, but long ago: not online
			flushAll(t, a, b)
			require.NoError(t, a.Sweep(ctx))
			expect(t, clk, a, subs) // nothing: u1 was online, u2 still is

			clk.add(45 * time.Second) // u2 and doc's u2 are past the window; u1 not
			require.NoError(t, b.Sweep(ctx))
			require.NoError(t, a.Sweep(ctx)) // whichever holds the lease: once
			expect(t, clk, a, subs, ev{presence.Offline, "u2", ""}, ev{presence.Leave, "u2", "doc"})

			b.TouchInAt("doc", "u2", clk.now())
			flushAll(t, b)
			left, err := a.Leave(ctx, "doc", "u2")
			require.NoError(t, err)
			require.True(t, left)
			clk.add(window)
			require.NoError(t, a.Sweep(ctx))
			require.NoError(t, b.Sweep(ctx))
			expect(t, clk, a, subs, ev{presence.Online, "u2", ""}, ev{presence.Join, "u2", "doc"}, ev{presence.Leave, "u2", "doc"},
				ev{presence.Offline, "u1", ""}, ev{presence.Offline, "u2", ""})
		})
	}
}

// TestEventsOfRemovals checks that what leaves Redis other than by the
// window's edge publishes its events, once: the per-user and room caps,
// Forget and retention; the sweep after them publishes only the rest.
func TestEventsOfRemovals(t *testing.T) {
	for _, top := range roomTopologies {
		t.Run(top.name, func(t *testing.T) {
			rdb := top.open(t)
			clk := newClock()
			stores, subs := eventStores(t, rdb, clk, 2, redispresence.WithMaxRoomsPerUser(1),
				redispresence.WithMaxRooms(2), redispresence.WithRetention(2*window))
			a, b := stores[0], stores[1]
			ctx := context.Background()
			at := func(d time.Duration) time.Time { return clk.now().Add(d) }

			a.TouchInAt("r1", "u", at(0))
			flushAll(t, a)
			b.TouchInAt("r2", "u", at(time.Second)) // one room per user: u leaves r1
			flushAll(t, b)
			expect(t, clk, a, subs, ev{presence.Online, "u", ""}, ev{presence.Join, "u", "r1"},
				ev{presence.Join, "u", "r2"}, ev{presence.Leave, "u", "r1"})

			a.TouchInAt("r3", "v", at(2*time.Second)) // three rooms in the index: r1 ends, empty
			flushAll(t, a)
			a.TouchInAt("r4", "w", at(3*time.Second)) // r2 ends, with u in it
			flushAll(t, a)
			clk.add(5 * time.Second) // the Forget comes after the touches: its tombstone is newer than them
			require.NoError(t, errOf(b.Forget(ctx, "w")))
			expect(t, clk, a, subs, ev{presence.Online, "v", ""}, ev{presence.Join, "v", "r3"},
				ev{presence.Leave, "u", "r2"}, ev{presence.Online, "w", ""}, ev{presence.Join, "w", "r4"},
				ev{presence.Offline, "w", ""}, ev{presence.Leave, "w", "r4"})

			clk.add(window)
			require.NoError(t, a.Sweep(ctx))
			require.NoError(t, errOf(b.Forget(ctx, "u")), "offline already: no event")
			expect(t, clk, a, subs, ev{presence.Offline, "u", ""}, ev{presence.Offline, "v", ""}, ev{presence.Leave, "v", "r3"})
			clk.add(2 * window)
			require.NoError(t, errOf(a.Prune(ctx, clk.now().Add(-2*window))))
			rooms, err := a.Rooms(ctx, forever, 0)
			require.NoError(t, err)
			assert.Empty(t, rooms, "retention ended r3")
			expect(t, clk, a, subs) // and published nothing: v was offline
		})
	}
}

// TestHoldsCountOncePerUser holds one user on two Stores: one Online, one
// user counted; it stays online while either holds it, and goes offline a
// window after the last release, or after its last Store stops flushing.
func TestHoldsCountOncePerUser(t *testing.T) {
	_, rdb := connect(t)
	clk := newClock()
	stores, subs := eventStores(t, rdb, clk, 3)
	a, b, c := stores[0], stores[1], stores[2]
	ctx := context.Background()
	relA, relB := a.Hold("h"), b.HoldIn("call", "h")
	relA2 := a.Hold("h") // a second tab
	zombie := c.Hold("z")
	defer zombie()
	flushAll(t, a, b, c)
	n, err := a.Count(ctx, window)
	require.NoError(t, err)
	assert.Equal(t, 2, n, "h held on two Stores counts once")
	// Each connection after the first is an Update, as on the engine.
	expect(t, clk, a, subs, ev{presence.Online, "h", ""}, ev{presence.Update, "h", ""}, ev{presence.Update, "h", ""},
		ev{presence.Join, "h", "call"}, ev{presence.Online, "z", ""})

	relA()
	relA()  // idempotent
	relA2() // a holds it no more; b does
	expect(t, clk, a, subs, ev{presence.Update, "h", ""}, ev{presence.Update, "h", ""})
	for range 3 {
		clk.add(window / 2)
		flushAll(t, a, b) // c has died: it flushes no more
		require.NoError(t, a.Sweep(ctx))
	}
	expect(t, clk, a, subs, ev{presence.Offline, "z", ""})

	relB()
	flushAll(t, b)
	expect(t, clk, a, subs, ev{presence.Update, "h", "call"}, ev{presence.Update, "h", ""})
	clk.add(window)
	require.NoError(t, a.Sweep(ctx))
	expect(t, clk, a, subs, ev{presence.Offline, "h", ""}, ev{presence.Leave, "h", "call"})
}

// TestEventsResumeAfterLostConnections kills every client connection
// between events: the readers resume from their last stream IDs, and no
// event is lost or repeated.
func TestEventsResumeAfterLostConnections(t *testing.T) {
	_, rdb := connect(t)
	clk := newClock()
	stores, subs := eventStores(t, rdb, clk, 2)
	admin := redis.NewClient(&redis.Options{Addr: rdb.(*redis.Client).Options().Addr})
	defer admin.Close()
	var want []ev
	for i := range 20 {
		id := fmt.Sprint("r", i)
		stores[i%2].TouchAt(id, clk.now())
		require.NoError(t, stores[i%2].Flush(context.Background()))
		want = append(want, ev{presence.Online, id, ""})
		require.NoError(t, admin.ClientKillByFilter(context.Background(), "TYPE", "normal", "SKIPME", "yes").Err())
	}
	expect(t, clk, stores[0], subs, want...)
}

// TestEventsGapIsOverflow: a stream whose sequence skips (events Redis
// trimmed before a reader got them, or a new master lacks) makes the next
// event an Overflow; a subscriber that does not read loses events,
// counted, and gets an Overflow first.
func TestEventsGapIsOverflow(t *testing.T) {
	_, rdb := connect(t)
	clk := newClock()
	s := newStore(t, rdb, clk.opt(), redispresence.WithOnlineWindow(window), redispresence.WithEvents(), redispresence.WithEventPoll(5*time.Millisecond), redispresence.WithShards(1))
	sub, err := s.Subscribe(context.Background(), 0)
	require.NoError(t, err)
	slow, err := s.Subscribe(context.Background(), 1)
	require.NoError(t, err)
	ctx := context.Background()
	s.TouchAt("a", clk.now())
	require.NoError(t, s.Flush(ctx))
	e := recv(t, sub)
	assert.Equal(t, presence.Online, e.Kind)
	// Five events the reader never sees: the stream's sequence jumps.
	require.NoError(t, rdb.HIncrBy(ctx, "presence:edge:{0}", "seq", 5).Err())
	s.TouchAt("b", clk.now())
	require.NoError(t, s.Flush(ctx))
	e = recv(t, sub)
	assert.Equal(t, presence.Overflow, e.Kind)
	e = recv(t, sub)
	assert.Equal(t, ev{presence.Online, "b", ""}, ev{e.Kind, e.ID, e.Room})

	e = recv(t, slow)
	assert.Equal(t, ev{presence.Online, "a", ""}, ev{e.Kind, e.ID, e.Room}, "its one slot kept the first")
	// sub may have b before the hub, still under its lock, offers it to
	// slow: wait for that delivery, not for time.
	require.Eventually(t, func() bool { return slow.Dropped() == 1 }, 10*time.Second, time.Millisecond, "b did not fit")
	s.TouchAt("c", clk.now())
	require.NoError(t, s.Flush(ctx))
	e = recv(t, slow)
	assert.Equal(t, presence.Overflow, e.Kind)
	require.NoError(t, s.Close(ctx))
	for closed := false; !closed; {
		select {
		case _, ok := <-slow.Events(): // c, if it came after the Overflow was read
			closed = !ok
		case <-time.After(10 * time.Second):
			require.FailNow(t, "Close did not close the subscription")
		}
	}
	_, err = newStore(t, rdb).Subscribe(context.Background(), 0)
	assert.ErrorIs(t, err, presence.ErrNoEvents)
}

// TestEventsUnderConcurrentTouchesFlushesAndSweeps runs three Stores
// flushing and sweeping on their own every 2ms while goroutines touch
// users and rooms and time runs fast, then checks every subscription
// against the model of a user's presence: Online and Offline alternate,
// starting with Online; Join and Leave too, per room; every subscription
// saw the same events; and the last event of each says what Redis holds.
func TestEventsUnderConcurrentTouchesFlushesAndSweeps(t *testing.T) {
	_, rdb := connect(t)
	clk := newClock()
	const users, rooms = 2000, 5
	var stores []*redispresence.Store
	var subs []*presence.Subscription
	for range 3 {
		s, err := redispresence.New(rdb, clk.opt(), redispresence.WithOnlineWindow(window), redispresence.WithEvents(), redispresence.WithShards(4),
			redispresence.WithFlushInterval(2*time.Millisecond), redispresence.WithEventPoll(2*time.Millisecond))
		require.NoError(t, err)
		sub, err := s.Subscribe(context.Background(), 1<<16)
		require.NoError(t, err)
		stores, subs = append(stores, s), append(subs, sub)
	}
	var touching sync.WaitGroup
	touched := make([]map[string]bool, 6) // "id/room" of each user and membership touched
	for g := range 6 {
		touching.Add(1)
		touched[g] = map[string]bool{}
		go func() {
			defer touching.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 3))
			for range 3000 {
				s := stores[rng.IntN(len(stores))]
				id := fmt.Sprint("u", rng.IntN(users))
				touched[g][id+"/"] = true
				if rng.IntN(3) == 0 {
					room := fmt.Sprint("room", rng.IntN(rooms))
					touched[g][id+"/"+room] = true
					s.TouchInAt(room, id, clk.now())
				} else {
					s.TouchAt(id, clk.now())
				}
				clk.add(40 * time.Millisecond) // a window every 1500 touches: users idle out and return
			}
		}()
	}
	// Besides the Stores' own flushers and sweepers, flush and sweep from
	// random Stores as fast as they go, so that time passes many edges
	// while the touches run.
	ctx := context.Background()
	stop, churned := make(chan struct{}), make(chan error)
	go func() {
		rng := rand.New(rand.NewPCG(9, 9))
		for {
			select {
			case <-stop:
				churned <- nil
				return
			default:
			}
			s := stores[rng.IntN(len(stores))]
			if err := errors.Join(s.Flush(ctx), s.Sweep(ctx)); err != nil {
				churned <- err
				return
			}
		}
	}()
	touching.Wait()
	close(stop)
	require.NoError(t, <-churned)
	clk.add(window / 2) // some go offline at the next sweep, some stay online
	for _, s := range stores {
		require.NoError(t, s.Flush(ctx))
		require.NoError(t, s.Sweep(ctx)) // whichever holds the lease
	}
	// The clock stands still: the flushers and sweepers publish nothing
	// more. Read every subscription to two markers (see expect).
	got := make([][]presence.Event, len(subs))
	for range 2 {
		m := fmt.Sprint("marker-", markers.Add(1))
		stores[0].TouchAt(m, clk.now())
		require.NoError(t, stores[0].Flush(ctx))
		for i, sub := range subs {
			for e := range sub.Events() {
				if e.ID == m {
					break
				}
				got[i] = append(got[i], e)
			}
		}
	}
	edges := map[int]float64{}
	for n := range 4 {
		edges[n], _ = rdb.HGet(ctx, fmt.Sprint("presence:edge:{", n, "}"), "edge").Float64()
	}
	var seqs []map[string][]presence.EventKind
	for i, sub := range subs {
		m := map[string][]presence.EventKind{}
		for _, e := range got[i] {
			require.NotEqual(t, presence.Overflow, e.Kind)
			if e.ID[0] == 'u' {
				m[e.ID+"/"+e.Room] = append(m[e.ID+"/"+e.Room], e.Kind)
			}
		}
		assert.Zero(t, sub.Dropped())
		seqs = append(seqs, m)
	}
	for i := 1; i < len(seqs); i++ {
		assert.Equal(t, seqs[0], seqs[i], "subscription %d saw other events than subscription 0", i)
	}
	require.NotEmpty(t, seqs[0])
	all := map[string]bool{}
	for _, m := range touched {
		maps.Copy(all, m)
	}
	offline := 0
	for key := range all {
		kinds := seqs[0][key] // none for one that was offline by the time it was flushed
		for j, k := range kinds {
			on := k == presence.Online || k == presence.Join
			require.Equal(t, j%2 == 0, on, "%s: %v", key, kinds)
		}
		id, room, _ := strings.Cut(key, "/")
		shard := id
		if room != "" {
			shard = room
		}
		var a presence.Activity
		var ok bool
		var err error
		if room == "" {
			a, ok, err = stores[0].Get(ctx, id)
		} else {
			a, ok, err = stores[0].Room(room).Get(ctx, id)
		}
		require.NoError(t, err)
		require.True(t, ok, key)
		edge := edges[int(crc32.Checksum([]byte(shard), crc32.MakeTable(crc32.Castagnoli))%4)]
		assert.Equal(t, float64(a.LastSeen.UnixMicro()) > edge, len(kinds)%2 == 1, "%s: %v, seen at %v", key, kinds, a.LastSeen)
		if len(kinds)%2 == 0 {
			offline++
		}
	}
	assert.NotZero(t, offline, "some went offline at the end")
	t.Logf("%d events, %d users and memberships touched, %d offline at the end", len(got[0]), len(all), offline)
	for _, s := range stores {
		require.NoError(t, s.Close(ctx))
	}
}

// recv returns sub's next event, or fails the test after 10s.
func recv(t *testing.T, sub *presence.Subscription) presence.Event {
	t.Helper()
	select {
	case e := <-sub.Events():
		return e
	case <-time.After(10 * time.Second):
		require.FailNow(t, "no event")
		return presence.Event{}
	}
}
