package redispresence_test

import (
	"context"
	"fmt"
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
func eventStores(t *testing.T, rdb redis.UniversalClient, clk *clock, n int, opts ...redispresence.Option) ([]*redispresence.Store, []*redispresence.Subscription) {
	var stores []*redispresence.Store
	var subs []*redispresence.Subscription
	for range n {
		s := newStore(t, rdb, append([]redispresence.Option{clk.opt(), redispresence.WithEvents(window),
			redispresence.WithEventPoll(5 * time.Millisecond)}, opts...)...)
		sub, err := s.Subscribe(0)
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
func expect(t *testing.T, clk *clock, s *redispresence.Store, subs []*redispresence.Subscription, want ...ev) {
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
func readUntil(t *testing.T, sub *redispresence.Subscription, marker string) []ev {
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
