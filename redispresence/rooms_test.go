package redispresence_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/onlinenow/presence"
	"github.com/onlinenow/presence/redispresence"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// roomTopologies are those where rooms are tested beyond the contract: a
// room's keys live in slots of their own on a cluster.
var roomTopologies = []topology{topologies[0], topologies[2]}

func ids(as []presence.Activity) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.ID
	}
	return out
}

func TestRoomsTwoNodes(t *testing.T) {
	for _, top := range roomTopologies {
		t.Run(top.name, func(t *testing.T) {
			rdb := top.open(t)
			ctx := context.Background()
			a, b := newStore(t, rdb), newStore(t, rdb)
			a.TouchInAt("doc1", "u1", t0)
			a.TouchInAt("doc1", "u2", t0.Add(time.Second))
			a.TouchInAt("doc2", "u1", t0.Add(2*time.Second))
			b.TouchInAt("doc1", "u3", t0.Add(3*time.Second))
			b.TouchInAt("doc1", "u1", t0.Add(500*time.Millisecond))
			b.TouchInAt("doc1", "u1", t0.Add(-time.Hour)) // older: the room's time stays
			b.TouchInAt("", "u4", t0)                     // no room, but a global touch
			b.TouchInAt("bad\x00name", "u4", t0)          // no room either: Rooms lists two
			require.NoError(t, a.Flush(ctx))
			require.NoError(t, b.Flush(ctx))

			for _, s := range []*redispresence.Store{a, b} {
				n, err := s.Room("doc1").Count(ctx, ago(t0))
				require.NoError(t, err)
				assert.Equal(t, 3, n)
				page, next, err := s.Room("doc1").Page(ctx, ago(t0), "", 0)
				require.NoError(t, err)
				assert.Equal(t, []string{"u3", "u2", "u1"}, ids(page))
				assert.Empty(t, next)
				u1, ok, err := s.Room("doc1").Get(ctx, "u1")
				require.NoError(t, err)
				require.True(t, ok)
				assert.Equal(t, t0.Add(500*time.Millisecond).UnixMicro(), u1.LastSeen.UnixMicro(), "the time in the room, the newest of both nodes")
				rooms, err := s.Rooms(ctx, ago(t0), 0)
				require.NoError(t, err)
				assert.Equal(t, []presence.RoomCount{{Room: "doc1", Count: 3}, {Room: "doc2", Count: 1}}, rooms)
				top1, err := s.Rooms(ctx, ago(t0), 1)
				require.NoError(t, err)
				assert.Equal(t, rooms[:1], top1)
				in, err := s.RoomsOf(ctx, "u1")
				require.NoError(t, err)
				assert.Equal(t, []string{"doc2", "doc1"}, in, "most recently active first")
				g, ok, err := s.Get(ctx, "u1")
				require.NoError(t, err)
				require.True(t, ok)
				assert.Equal(t, t0.Add(2*time.Second).UnixMicro(), g.LastSeen.UnixMicro(), "the global time is the newest of all rooms")
				_, ok, err = s.Get(ctx, "u4")
				require.NoError(t, err)
				assert.True(t, ok)
			}
			n, err := a.Room("").Count(ctx, forever)
			require.NoError(t, err)
			assert.Zero(t, n)

			left, err := b.Leave(ctx, "doc1", "u1")
			require.NoError(t, err)
			assert.True(t, left)
			left, err = b.Leave(ctx, "doc1", "u1")
			require.NoError(t, err)
			assert.False(t, left, "not a member any more")
			require.NoError(t, a.Flush(ctx))
			require.NoError(t, b.Flush(ctx))
			n, err = a.Room("doc1").Count(ctx, ago(t0))
			require.NoError(t, err)
			assert.Equal(t, 2, n)
			in, err := a.RoomsOf(ctx, "u1")
			require.NoError(t, err)
			assert.Equal(t, []string{"doc2"}, in)
			_, ok, err := a.Get(ctx, "u1")
			require.NoError(t, err)
			assert.True(t, ok, "leaving a room keeps the global time")

			b.TouchInAt("doc1", "u1", t0.Add(4*time.Second))
			require.NoError(t, b.Flush(ctx))
			in, err = a.RoomsOf(ctx, "u1")
			require.NoError(t, err)
			assert.Equal(t, []string{"doc1", "doc2"}, in, "a touch after Leave joins again")

			a.TouchInAt("doc2", "u1\x00doc1", t0) // an ID with a NUL
			require.NoError(t, a.Flush(ctx))
			in, err = a.RoomsOf(ctx, "u1\x00doc1")
			require.NoError(t, err)
			assert.Equal(t, []string{"doc2"}, in)
			require.NoError(t, errOf(b.Forget(ctx, "u1")))
			require.NoError(t, b.Flush(ctx))
			in, err = a.RoomsOf(ctx, "u1")
			require.NoError(t, err)
			assert.Empty(t, in)
			for _, room := range []string{"doc1", "doc2"} {
				_, ok, err := a.Room(room).Get(ctx, "u1")
				require.NoError(t, err)
				assert.False(t, ok, "Forget left %s", room)
			}
			in, err = a.RoomsOf(ctx, "u1\x00doc1")
			require.NoError(t, err)
			assert.Equal(t, []string{"doc2"}, in, "Forget of u1 left the user whose ID starts with it")
			assert.NotContains(t, memberLists(t, rdb), "u1\x00doc2")
		})
	}
}

// TestRoomTouchesCoalesce: a membership touched many times between flushes
// costs one write to its room, one to the user's room list and one to the
// room index, beside the user's global one.
func TestRoomTouchesCoalesce(t *testing.T) {
	_, rdb := connect(t)
	s := newStore(t, rdb)
	for i := range 1000 {
		s.TouchInAt("r", "u", t0.Add(time.Duration(i)*time.Millisecond))
	}
	require.NoError(t, s.Flush(context.Background()))
	st := s.Stats()
	assert.Equal(t, uint64(1000), st.Touches)
	assert.Equal(t, uint64(4), st.Sent)
	a, ok, err := s.Room("r").Get(context.Background(), "u")
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, t0.Add(999*time.Millisecond).UnixMicro(), a.LastSeen.UnixMicro())
}

func TestRoomCaps(t *testing.T) {
	for _, top := range roomTopologies {
		t.Run(top.name, func(t *testing.T) {
			rdb := top.open(t)
			ctx := context.Background()
			s := newStore(t, rdb, redispresence.WithMaxRoomsPerUser(2), redispresence.WithMaxRooms(3))
			s.TouchInAt("r1", "u", t0)
			s.TouchInAt("r2", "u", t0.Add(time.Second))
			s.TouchInAt("r3", "u", t0.Add(2*time.Second))
			require.NoError(t, s.Flush(ctx))
			in, err := s.RoomsOf(ctx, "u")
			require.NoError(t, err)
			assert.Equal(t, []string{"r3", "r2"}, in, "the least recently active room was left")
			_, ok, err := s.Room("r1").Get(ctx, "u")
			require.NoError(t, err)
			assert.False(t, ok)

			for i, room := range []string{"a", "b", "c", "d"} {
				s.TouchInAt(room, "v"+room, t0.Add(time.Duration(10+i)*time.Second))
				require.NoError(t, s.Flush(ctx))
			}
			rooms, err := s.Rooms(ctx, forever, 0)
			require.NoError(t, err)
			assert.Equal(t, []presence.RoomCount{{Room: "b", Count: 1}, {Room: "c", Count: 1}, {Room: "d", Count: 1}}, rooms,
				"three rooms at most: the least recently active ended")
			for _, room := range []string{"r2", "r3", "a"} {
				n, err := s.Room(room).Count(ctx, forever)
				require.NoError(t, err)
				assert.Zero(t, n, "room %s ended with its members", room)
			}
			in, err = s.RoomsOf(ctx, "u")
			require.NoError(t, err)
			assert.Empty(t, in, "the rooms ended")
			assert.Equal(t, []string{"vb\x00b", "vc\x00c", "vd\x00d"}, memberLists(t, rdb),
				"leaving for the caps and the end of rooms left the users' lists")
		})
	}
}

func TestRoomRetention(t *testing.T) {
	_, rdb := connect(t)
	ctx := context.Background()
	s := newStore(t, rdb, redispresence.WithRetention(time.Hour), redispresence.WithClock(func() time.Time { return t0 }))
	s.TouchInAt("idle", "u", t0.Add(-2*time.Hour))
	s.TouchInAt("live", "old", t0.Add(-90*time.Minute))
	s.TouchInAt("live", "new", t0.Add(-time.Minute))
	require.NoError(t, s.Flush(ctx))
	in, err := s.RoomsOf(ctx, "u")
	require.NoError(t, err)
	assert.Empty(t, in, "a membership beyond retention is not listed, trimmed or not")
	require.NoError(t, errOf(s.Prune(ctx, t0.Add(-time.Hour))))
	require.NoError(t, errOf(s.Prune(ctx, t0.Add(-time.Hour))), "idempotent")
	rooms, err := s.Rooms(ctx, forever, 0)
	require.NoError(t, err)
	assert.Equal(t, []presence.RoomCount{{Room: "live", Count: 1}}, rooms, "the idle room ended; the old member left the live one")
	assert.Equal(t, []string{"new\x00live"}, memberLists(t, rdb), "the memberships trimmed left their users' lists")
}

// memberLists returns every membership in the users' lists.
func memberLists(t *testing.T, rdb redis.UniversalClient) []string {
	ctx := context.Background()
	var mu sync.Mutex
	var all []string
	each := func(ctx context.Context, c *redis.Client) error {
		keys, err := c.Keys(ctx, "presence:in:*").Result()
		for _, k := range keys {
			ms, err := c.ZRange(ctx, k, 0, -1).Result()
			require.NoError(t, err)
			mu.Lock()
			all = append(all, ms...)
			mu.Unlock()
		}
		return err
	}
	if cl, ok := rdb.(*redis.ClusterClient); ok {
		require.NoError(t, cl.ForEachMaster(ctx, each))
	} else {
		require.NoError(t, each(ctx, rdb.(*redis.Client)))
	}
	slices.Sort(all)
	return all
}

// TestConcurrentRoomTouchesAndFlushes touches memberships from many
// goroutines while the flusher runs every 2ms and lets idle entries go,
// and compares every membership, room count and global time with a model.
func TestConcurrentRoomTouchesAndFlushes(t *testing.T) {
	_, rdb := connect(t)
	s, err := redispresence.New(rdb, redispresence.WithFlushInterval(2*time.Millisecond))
	require.NoError(t, err)
	const workers, users, rooms = 6, 300, 40
	type m struct{ room, id string }
	newest := make([]map[m]int64, workers)
	var wg sync.WaitGroup
	for g := range workers {
		newest[g] = map[m]int64{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 9))
			for range 10_000 {
				k := m{fmt.Sprint("r", rng.IntN(rooms)), fmt.Sprint("u", rng.IntN(users))}
				at := t0.Add(-time.Duration(rng.IntN(3600_000_000)) * time.Microsecond)
				s.TouchInAt(k.room, k.id, at)
				newest[g][k] = max(newest[g][k], at.UnixMicro())
			}
		}()
	}
	wg.Wait()
	require.NoError(t, s.Close(context.Background()))
	want, global, count := map[m]int64{}, map[string]int64{}, map[string]int{}
	for _, nm := range newest {
		for k, us := range nm {
			want[k] = max(want[k], us)
		}
	}
	for k, us := range want {
		global[k.id] = max(global[k.id], us)
		count[k.room]++
	}
	ctx := context.Background()
	for k, us := range want {
		a, ok, err := s.Room(k.room).Get(ctx, k.id)
		require.NoError(t, err)
		require.True(t, ok, k)
		require.Equal(t, us, a.LastSeen.UnixMicro(), k)
	}
	for id, us := range global {
		a, ok, err := s.Get(ctx, id)
		require.NoError(t, err)
		require.True(t, ok, id)
		require.Equal(t, us, a.LastSeen.UnixMicro(), id)
	}
	got, err := s.Rooms(ctx, forever, 0)
	require.NoError(t, err)
	require.Len(t, got, len(count))
	for _, rc := range got {
		assert.Equal(t, count[rc.Room], rc.Count, rc.Room)
	}
}
