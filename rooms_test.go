package presence_test

import (
	"bytes"
	"cmp"
	"encoding/base64"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/onlinenow/presence"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRoomBasics(t *testing.T) {
	clk := newClock()
	e := presence.New(presence.WithClock(clk.Now), presence.WithShards(4))
	doc, chat := e.Room("doc"), e.Room("chat")

	e.TouchIn("doc", "a")
	clk.Advance(time.Second)
	e.TouchIn("doc", "b")
	e.TouchIn("chat", "a")
	clk.Advance(time.Second)
	e.TouchIn("doc", "c")
	require.True(t, e.SetMeta("c", "m"))

	assert.Equal(t, 3, doc.Count(time.Minute))
	assert.Equal(t, 2, doc.Count(time.Second), "the last second and the one before, at the resolution")
	assert.Equal(t, 1, chat.Count(time.Minute))
	assert.Equal(t, []string{"c", "b", "a"}, ids(doc.Recent(time.Minute, 0)))
	assert.Equal(t, "m", doc.Recent(time.Minute, 1)[0].Meta, "a member's meta is the user's")
	ls, ok := doc.LastSeen("a")
	require.True(t, ok)
	assert.Equal(t, t0, ls, "the time in the room")
	ls, _ = e.LastSeen("a")
	assert.Equal(t, t0.Add(time.Second), ls, "TouchIn touches globally too")
	_, ok = chat.LastSeen("b")
	assert.False(t, ok)
	assert.Equal(t, []string{"chat", "doc"}, e.RoomsOf("a"), "most recently active first")
	assert.Equal(t, []presence.RoomCount{{Room: "doc", Count: 3}, {Room: "chat", Count: 1}}, e.Rooms(time.Minute, 0))
	assert.Equal(t, []presence.RoomCount{{Room: "doc", Count: 3}}, e.Rooms(time.Minute, 1))
	assert.Equal(t, 3, e.Len(), "rooms add no users")

	assert.True(t, e.Leave("doc", "a"))
	assert.False(t, e.Leave("doc", "a"))
	assert.False(t, e.Leave("nowhere", "a"))
	assert.Equal(t, 2, doc.Count(time.Minute))
	_, ok = e.Get("a")
	assert.True(t, ok, "leaving a room keeps the user")
	assert.Equal(t, []string{"chat"}, e.RoomsOf("a"))

	assert.True(t, e.Leave("chat", "a"))
	assert.Equal(t, 0, chat.Count(time.Minute))
	assert.Equal(t, []presence.Activity{}, chat.Recent(time.Minute, 10))
	assert.Equal(t, 1, e.Stats().Rooms, "an empty room disappears")

	require.True(t, e.Forget("b"))
	assert.Equal(t, []string{"c"}, ids(doc.Recent(time.Minute, 0)), "Forget leaves every room")
	assert.Empty(t, e.RoomsOf("b"))
	st := e.Stats()
	assert.Equal(t, 1, st.Rooms)
	assert.Equal(t, 1, st.Memberships)
	require.NoError(t, presence.CheckInvariants(e))
}

func TestRoomNames(t *testing.T) {
	e := presence.New()
	bad := []string{"", strings.Repeat("r", presence.MaxIDLen+1), "\xff", "a\x00b"}
	for _, name := range bad {
		e.TouchIn(name, "u")
		e.TouchInAt(name, "u", time.Now())
		assert.Equal(t, 0, e.Room(name).Count(time.Hour))
	}
	st := e.Stats()
	assert.Equal(t, uint64(2*len(bad)), st.RejectedRooms)
	assert.Equal(t, 0, st.Rooms)
	assert.Equal(t, 1, st.Users, "the global touch is still recorded")
	e.TouchIn("ok", "")
	assert.Equal(t, uint64(1), e.Stats().RejectedIDs)
	e.TouchIn(strings.Repeat("r", presence.MaxIDLen), "u")
	e.TouchIn("ünïcode", "u")
	assert.Equal(t, 2, e.Stats().Rooms)
	require.NoError(t, presence.CheckInvariants(e))
}

func TestRoomCursors(t *testing.T) {
	clk := newClock()
	e := presence.New(presence.WithClock(clk.Now))
	for i := range 10 {
		e.TouchIn("a", fmt.Sprint("u", i))
		e.TouchIn("b", fmt.Sprint("u", i))
		clk.Advance(time.Millisecond)
	}
	a, b := e.Room("a"), e.Room("b")
	pageA, curA := a.Page(time.Time{}, presence.Cursor{}, 3)
	require.Len(t, pageA, 3)
	_, curB := b.Page(time.Time{}, presence.Cursor{}, 3)
	_, curE := e.Page(time.Time{}, presence.Cursor{}, 3)

	assert.NoError(t, a.CheckCursor(curA))
	assert.NoError(t, a.CheckCursor(presence.Cursor{}))
	assert.ErrorIs(t, b.CheckCursor(curA), presence.ErrInvalidCursor)
	assert.ErrorIs(t, a.CheckCursor(curE), presence.ErrInvalidCursor)
	assert.ErrorIs(t, e.CheckCursor(curB), presence.ErrInvalidCursor)
	assert.NoError(t, e.CheckCursor(curE))
	page, next := b.Page(time.Time{}, curA, 3)
	assert.Empty(t, page, "a refused cursor ends the walk")
	assert.True(t, next.IsZero())

	// The text form keeps the room's scope.
	text, err := curA.MarshalText()
	require.NoError(t, err)
	var back presence.Cursor
	require.NoError(t, back.UnmarshalText(text))
	assert.Equal(t, curA, back)
	assert.ErrorIs(t, b.CheckCursor(back), presence.ErrInvalidCursor)
	rest, _ := a.Page(time.Time{}, back, 0)
	assert.Equal(t, ids(a.Recent(time.Hour, 0))[3:], ids(rest))
	for _, bad := range [][]byte{{0}, {0, 0, 0, 0, 0, 2, 'x'}, {0, 1, 2}} {
		var c presence.Cursor
		assert.ErrorIs(t, c.UnmarshalText([]byte(base64URL(bad))), presence.ErrInvalidCursor, "%x", bad)
	}
}

func TestRoomRetention(t *testing.T) {
	clk := newClock()
	e := presence.New(presence.WithClock(clk.Now), presence.WithRetention(time.Minute), presence.WithShards(2))
	e.TouchIn("r", "old")
	e.TouchIn("s", "old")
	clk.Advance(50 * time.Second)
	e.TouchIn("r", "new")
	e.Touch("old") // seen globally, not in a room
	clk.Advance(20 * time.Second)

	r := e.Room("r")
	assert.Equal(t, []string{"new"}, ids(r.Recent(time.Hour, 0)), "retention ends memberships")
	assert.Equal(t, 1, r.CountSince(time.Time{}))
	_, ok := r.LastSeen("old")
	assert.False(t, ok)
	assert.Empty(t, e.RoomsOf("old"))
	assert.Equal(t, []presence.RoomCount{{Room: "r", Count: 1}}, e.Rooms(time.Hour, 0))
	assert.False(t, e.Leave("s", "old"), "an expired membership is gone")
	assert.True(t, e.Forget("old"), "the user is still seen")
	assert.Equal(t, 1, e.Stats().Memberships, "expired memberships are reclaimed")

	clk.Advance(time.Hour)
	assert.Equal(t, 0, e.Prune(clk.Now()), "everyone left had expired")
	st := e.Stats()
	assert.Equal(t, 0, st.Memberships)
	assert.Equal(t, 0, st.Rooms)
	require.NoError(t, presence.CheckInvariants(e))
}

// TestUserCapLeavesRooms: a user evicted for WithMaxUsers leaves its rooms.
func TestUserCapLeavesRooms(t *testing.T) {
	clk := newClock()
	e := presence.New(presence.WithClock(clk.Now), presence.WithMaxUsers(10))
	for i := range 30 {
		e.TouchIn(fmt.Sprint("room", i%3), fmt.Sprint("u", i))
		clk.Advance(time.Second)
	}
	assert.Equal(t, 10, e.Len())
	n := 0
	for _, rc := range e.Rooms(time.Hour, 0) {
		n += rc.Count
	}
	assert.Equal(t, 10, n)
	assert.Equal(t, 10, e.Stats().Memberships)
	require.NoError(t, presence.CheckInvariants(e))
}

// TestRoomFloods: a flood of room names, or of rooms for one user, stays
// at the caps, keeping the most recently active.
func TestRoomFloods(t *testing.T) {
	n := 1_000_000
	if testing.Short() || raceEnabled {
		n = 100_000
	}
	t.Run("names", func(t *testing.T) {
		clk := newClock()
		e := presence.New(presence.WithClock(clk.Now), presence.WithMaxRooms(1000))
		var before runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for i := range n {
			e.TouchIn(fmt.Sprint("room", i), fmt.Sprint("u", i%100))
			clk.Advance(time.Millisecond)
		}
		st := e.Stats()
		assert.Equal(t, 1000, st.Rooms)
		assert.Equal(t, 1000, st.Memberships)
		assert.Equal(t, uint64(n-1000), st.RoomsEnded)
		rooms := e.Rooms(time.Hour, 0)
		require.Len(t, rooms, 1000)
		names := make([]string, 0, len(rooms))
		for _, rc := range rooms {
			names = append(names, rc.Room)
		}
		slices.Sort(names)
		want := make([]string, 0, 1000)
		for i := n - 1000; i < n; i++ {
			want = append(want, fmt.Sprint("room", i))
		}
		slices.Sort(want)
		assert.Equal(t, want, names, "the newest rooms stay")
		assert.Len(t, e.RoomsOf("u0"), 10)
		var after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&after)
		assert.Less(t, int64(after.HeapAlloc)-int64(before.HeapAlloc), int64(64<<20), "heap growth")
		require.NoError(t, presence.CheckInvariants(e))
	})
	t.Run("per-user", func(t *testing.T) {
		clk := newClock()
		e := presence.New(presence.WithClock(clk.Now), presence.WithMaxRoomsPerUser(16))
		for i := range 10_000 {
			e.TouchIn(fmt.Sprint("room", i), "u")
			clk.Advance(time.Millisecond)
		}
		e.TouchInAt("room9990", "u", clk.Now()) // the oldest but one, active again
		e.TouchIn("late", "u")
		var want []string
		want = append(want, "late", "room9990")
		for i := 9999; len(want) < 16; i-- {
			if i != 9990 {
				want = append(want, fmt.Sprint("room", i))
			}
		}
		assert.Equal(t, want, e.RoomsOf("u"))
		st := e.Stats()
		assert.Equal(t, 16, st.Memberships)
		assert.Equal(t, 16, st.Rooms, "rooms left empty are gone")
		require.NoError(t, presence.CheckInvariants(e))
	})
}

// TestRoomCounters: a room that grows past a few hundred members keeps
// slot counters, and counts as before.
func TestRoomCounters(t *testing.T) {
	clk := newClock()
	e := presence.New(presence.WithClock(clk.Now), presence.WithShards(2))
	r := e.Room("big")
	m := newModel(time.Second, 0)
	m.inSlot = filedBy(e)
	rng := rand.New(rand.NewPCG(3, 3))
	for i := range 3000 {
		id := fmt.Sprint("u", rng.IntN(1500))
		at := clk.ns.Load() - rng.Int64N(int64(2*time.Hour))
		e.TouchInAt("big", id, time.Unix(0, at))
		m.touch(id, at, clk.ns.Load())
		if i == 100 {
			assert.False(t, presence.RoomCounted(e, "big"))
		}
		clk.Advance(time.Duration(rng.Int64N(int64(time.Second))))
	}
	assert.True(t, presence.RoomCounted(e, "big"))
	now := clk.ns.Load()
	for _, w := range []time.Duration{0, time.Second, time.Minute, 37 * time.Minute, time.Hour, 3 * time.Hour} {
		assert.Equal(t, len(m.since(time.Unix(0, now).Add(-w), now)), r.Count(w), "Count(%v)", w)
	}
	require.NoError(t, presence.CheckInvariants(e))
}

// roomModel is the model of an engine with rooms: the users, and one model
// per room of its members with their times in the room.
type roomModel struct {
	*model
	rooms map[string]*model
}

func (m *roomModel) room(name string) *model {
	r := m.rooms[name]
	if r == nil {
		r = newModel(time.Duration(m.res), time.Duration(m.retention))
		r.inSlot = m.inSlot
		m.rooms[name] = r
	}
	return r
}

// drop removes id from the users and every room.
func (m *roomModel) drop(id string) {
	delete(m.users, id)
	for _, r := range m.rooms {
		delete(r.users, id)
	}
}

// expected returns what a room's page walk holds since t, with each
// user's meta.
func (m *roomModel) expected(name string, t time.Time, now int64) []presence.Activity {
	out := m.room(name).since(t, now)
	for i := range out {
		out[i].Meta = m.users[out[i].ID].meta
	}
	return out
}

func checkRooms(t *testing.T, e *presence.Engine, m *roomModel, now int64, rng *rand.Rand) {
	t.Helper()
	var busiest []presence.RoomCount
	for name, rm := range m.rooms {
		r := e.Room(name)
		all := m.expected(name, time.Time{}, now)
		if len(all) > 0 {
			busiest = append(busiest, presence.RoomCount{Room: name, Count: len(all)})
		}
		w := time.Duration(rng.Int64N(int64(3 * time.Hour)))
		since := time.Unix(0, now).Add(-w)
		want := m.expected(name, since, now)
		require.Equal(t, len(want), r.Count(w), "room %s: Count(%v)", name, w)
		later := time.Unix(0, now).Add(w)
		require.Equal(t, len(rm.since(later, now)), r.CountSince(later), "room %s: CountSince(now+%v)", name, w)
		limit := rng.IntN(8) - 1
		if limit > 0 && len(want) > limit {
			want = want[:limit]
		}
		if len(want) == 0 {
			want = []presence.Activity{}
		}
		require.Equal(t, want, r.Recent(w, limit), "room %s: Recent(%v, %d)", name, w, limit)
		size := 1 + rng.IntN(5)
		paged := allPages(func(c presence.Cursor) ([]presence.Activity, presence.Cursor) { return r.Page(time.Time{}, c, size) })
		if len(all) == 0 {
			all = nil
		}
		require.Equal(t, all, paged, "room %s: paged walk", name)
		for id, u := range rm.users {
			ls, ok := r.LastSeen(id)
			require.Equal(t, rm.visible(u, math.MinInt64, now), ok, "room %s: LastSeen(%s)", name, id)
			if ok {
				require.Equal(t, u.ls, ls.UnixNano())
			}
		}
	}
	slices.SortFunc(busiest, func(a, b presence.RoomCount) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), strings.Compare(a.Room, b.Room))
	})
	require.Equal(t, busiest, append([]presence.RoomCount(nil), e.Rooms(100*time.Hour, 0)...), "Rooms")
	for id := range m.users {
		type in struct {
			name string
			ls   int64
		}
		var joined []in
		for name, rm := range m.rooms {
			if u, ok := rm.users[id]; ok && rm.visible(u, math.MinInt64, now) {
				joined = append(joined, in{name, u.ls})
			}
		}
		slices.SortFunc(joined, func(a, b in) int { return cmp.Or(cmp.Compare(b.ls, a.ls), strings.Compare(a.name, b.name)) })
		var want []string
		for _, j := range joined {
			want = append(want, j.name)
		}
		got := e.RoomsOf(id)
		if len(got) == 0 {
			got = nil
		}
		require.Equal(t, want, got, "RoomsOf(%s)", id)
	}
}

func TestRoomsAgainstModel(t *testing.T) {
	cases := []struct {
		shards    int
		res       time.Duration
		retention time.Duration
		step      time.Duration
		seed      uint64
	}{
		{1, time.Second, 0, 2 * time.Second, 1},
		{4, time.Millisecond, 0, 100 * time.Millisecond, 2},
		{4, time.Second, 20 * time.Minute, 20 * time.Second, 3},
		{2, time.Millisecond, time.Second, 50 * time.Millisecond, 4},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("shards=%d/res=%v/ret=%v", tc.shards, tc.res, tc.retention), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(tc.seed, 5))
			clk := newClock()
			fresh := func() *presence.Engine {
				return presence.New(presence.WithClock(clk.Now), presence.WithShards(tc.shards),
					presence.WithResolution(tc.res), presence.WithRetention(tc.retention))
			}
			e := fresh()
			m := &roomModel{model: newModel(tc.res, tc.retention), rooms: map[string]*model{}}
			m.inSlot = filedBy(e)
			for i := range 4000 {
				id, room := fmt.Sprint("u", rng.IntN(60)), fmt.Sprint("r", rng.IntN(8))
				now := clk.ns.Load()
				switch r := rng.IntN(100); {
				case r < 40:
					e.TouchIn(room, id)
					m.touch(id, now, now)
					m.room(room).touch(id, now, now)
				case r < 60:
					at := now - rng.Int64N(int64(2*time.Hour)) + rng.Int64N(int64(time.Hour))/4
					e.TouchInAt(room, id, time.Unix(0, at))
					m.touch(id, at, now)
					m.room(room).touch(id, at, now)
				case r < 68:
					e.Touch(id)
					m.touch(id, now, now)
				case r < 78:
					u, ok := m.room(room).users[id]
					ok = ok && m.visible(u, math.MinInt64, now)
					require.Equal(t, ok, e.Leave(room, id), "Leave(%s, %s)", room, id)
					delete(m.room(room).users, id)
				case r < 82:
					u, ok := m.users[id]
					ok = ok && m.visible(u, math.MinInt64, now)
					require.Equal(t, ok, e.Forget(id), "Forget(%s)", id)
					m.drop(id)
				case r < 84:
					before := now - rng.Int64N(int64(time.Hour))
					want := 0
					for id, u := range m.users {
						if u.ls < before {
							if m.visible(u, math.MinInt64, now) {
								want++
							}
							m.drop(id)
						}
					}
					require.Equal(t, want, e.Prune(time.Unix(0, before)), "Prune")
				case r < 88:
					meta := fmt.Sprint("m", rng.IntN(3))
					u, ok := m.users[id]
					ok = ok && m.visible(u, math.MinInt64, now)
					require.Equal(t, ok, e.SetMeta(id, meta))
					if ok {
						u.meta = meta
					}
				case r < 90: // a snapshot read back into a new engine, which goes on
					var buf bytes.Buffer
					_, err := e.WriteTo(&buf)
					require.NoError(t, err)
					e = fresh()
					_, err = e.ReadFrom(&buf)
					require.NoError(t, err)
					m.restart(now)
					for _, rm := range m.rooms {
						rm.restart(now)
					}
				default:
					clk.Advance(time.Duration(rng.Int64N(int64(tc.step) * 20)))
				}
				clk.Advance(time.Duration(rng.Int64N(int64(tc.step))))
				if i%100 == 0 {
					checkRooms(t, e, m, clk.ns.Load(), rng)
					checkAll(t, e, m.model, clk.ns.Load(), rng, true)
					require.NoError(t, presence.CheckInvariants(e))
				}
			}
			checkRooms(t, e, m, clk.ns.Load(), rng)
			require.NoError(t, presence.CheckInvariants(e))
		})
	}
}

// TestConcurrentRooms: goroutines join, leave and forget in shared rooms,
// each with users of its own, so that rooms empty and come back while
// others write to them; queriers walk the rooms meanwhile. The result must
// be each goroutine's model, merged.
func TestConcurrentRooms(t *testing.T) {
	const workers, perG, rooms = 8, 3000, 6
	clk := newClock()
	e := presence.New(presence.WithClock(clk.Now), presence.WithShards(4), presence.WithResolution(time.Millisecond))
	logs := make([]*roomModel, workers)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for g := range workers {
		logs[g] = &roomModel{model: newModel(time.Millisecond, 0), rooms: map[string]*model{}}
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 11))
			m := logs[g]
			for range perG {
				id, room := fmt.Sprintf("g%d-%d", g, rng.IntN(30)), fmt.Sprint("r", rng.IntN(rooms))
				at := t0.UnixNano() + rng.Int64N(int64(10*time.Minute))
				if rng.IntN(3) == 0 {
					id = "stay-" + id // never leaves, so no walk may return it twice
				}
				switch r := rng.IntN(10); {
				case r < 6 || strings.HasPrefix(id, "stay-"):
					e.TouchInAt(room, id, time.Unix(0, at))
					m.touch(id, at, at)
					m.room(room).touch(id, at, at)
				case r < 9:
					_, ok := m.room(room).users[id]
					assert.Equal(t, ok, e.Leave(room, id))
					delete(m.room(room).users, id)
				default:
					_, ok := m.users[id]
					assert.Equal(t, ok, e.Forget(id))
					m.drop(id)
				}
			}
		}()
	}
	qwg := queriers(2, stop, func(q, i int) bool {
		r := e.Room(fmt.Sprint("r", (i+q)%rooms))
		// A member that left and came back is new to the walk.
		ok := walkedOnce(t, func(c presence.Cursor) ([]presence.Activity, presence.Cursor) { return r.Page(time.Time{}, c, 7) },
			func(id string) bool { return strings.HasPrefix(id, "stay-") })
		assert.LessOrEqual(t, r.Count(time.Hour), workers*60, "more members than IDs") // 30 IDs and 30 stay- IDs each
		e.Rooms(time.Hour, 3)
		return ok
	})
	wg.Wait()
	close(stop)
	qwg.Wait()

	ref := &roomModel{model: newModel(time.Millisecond, 0), rooms: map[string]*model{}}
	for _, m := range logs {
		for id, u := range m.users {
			ref.touch(id, u.ls, u.ls)
		}
		for name, rm := range m.rooms {
			for id, u := range rm.users {
				ref.room(name).touch(id, u.ls, u.ls)
			}
		}
	}
	for name, rm := range ref.rooms {
		rm.inSlot = func(a string, _ *modelUser, b string, _ *modelUser) int { return presence.CompareHeldIn(e, name, a, b) }
	}
	ref.inSlot = func(a string, _ *modelUser, b string, _ *modelUser) int { return presence.CompareHeld(e, a, b) }
	rng := rand.New(rand.NewPCG(1, 1))
	checkRooms(t, e, ref, clk.ns.Load(), rng)
	checkAll(t, e, ref.model, clk.ns.Load(), rng, false)
	require.NoError(t, presence.CheckInvariants(e))
}

func base64URL(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// FuzzRoomNames: any room name and ID, touched, left and queried, either
// becomes a room that behaves as one (when the name and ID are valid) or
// is counted as rejected; nothing panics and the invariants hold.
func FuzzRoomNames(f *testing.F) {
	f.Add("doc", "alice")
	f.Add("", "x")
	f.Add("a\x00b", "x")
	f.Add("\xff\xfe", "y")
	f.Add(strings.Repeat("r", presence.MaxIDLen+1), "z")
	f.Fuzz(func(t *testing.T, room, id string) {
		clk := newClock()
		e := presence.New(presence.WithClock(clk.Now), presence.WithShards(2))
		e.TouchIn(room, id)
		e.TouchInAt(room, id, clk.Now().Add(time.Second))
		validID := id != "" && len(id) <= presence.MaxIDLen
		validName := room != "" && len(room) <= presence.MaxIDLen && utf8.ValidString(room) && !strings.Contains(room, "\x00")
		st := e.Stats()
		switch {
		case !validID:
			assert.Equal(t, uint64(2), st.RejectedIDs)
			assert.Equal(t, 0, st.Rooms)
		case !validName:
			assert.Equal(t, uint64(2), st.RejectedRooms)
			assert.Equal(t, 0, st.Rooms)
			assert.Equal(t, 1, e.Len())
		default:
			assert.Equal(t, []string{room}, e.RoomsOf(id))
			assert.Equal(t, 1, e.Room(room).CountSince(time.Time{}))
			page, _ := e.Room(room).Page(time.Time{}, presence.Cursor{}, 0)
			require.Len(t, page, 1)
			assert.Equal(t, id, page[0].ID)
			assert.Equal(t, []presence.RoomCount{{Room: room, Count: 1}}, e.Rooms(time.Hour, 0))
		}
		require.NoError(t, presence.CheckInvariants(e))
		assert.Equal(t, validID && validName, e.Leave(room, id))
		assert.Equal(t, 0, e.Stats().Rooms)
		require.NoError(t, presence.CheckInvariants(e))
	})
}

// TestSnapshotRooms: snapshots carry memberships; merging two snapshots
// merges them, the newer time in each room winning; files written before
// rooms load.
func TestSnapshotRooms(t *testing.T) {
	a, b := presence.New(), presence.New()
	a.TouchInAt("doc", "u1", t0)
	a.TouchInAt("doc", "u2", t0.Add(time.Second))
	a.TouchInAt("chat", "u1", t0.Add(2*time.Second))
	b.TouchInAt("doc", "u1", t0.Add(3*time.Second)) // newer in doc
	b.TouchInAt("chat", "u1", t0.Add(time.Second))  // older in chat
	b.TouchInAt("news", "u3", t0)
	b.Leave("news", "u3") // u3 stays a user, in no room

	got := presence.New()
	for _, e := range []*presence.Engine{a, b} {
		_, err := got.ReadFrom(bytes.NewReader(snapshotOf(t, e)))
		require.NoError(t, err)
	}
	at := func(room, id string) time.Time {
		ls, ok := got.Room(room).LastSeen(id)
		require.True(t, ok, "%s in %s", id, room)
		return ls
	}
	assert.Equal(t, t0.Add(3*time.Second), at("doc", "u1"))
	assert.Equal(t, t0.Add(time.Second), at("doc", "u2"))
	assert.Equal(t, t0.Add(2*time.Second), at("chat", "u1"))
	assert.Equal(t, []string{"doc", "chat"}, got.RoomsOf("u1"))
	assert.Empty(t, got.RoomsOf("u3"))
	assert.Equal(t, 3, got.Len())
	assert.Equal(t, 2, got.Stats().Rooms)
	require.NoError(t, presence.CheckInvariants(got))

	// Version 1, as written before rooms: 20 users, meta, no rooms.
	v1, err := os.ReadFile("testdata/v1-20-users.snap")
	require.NoError(t, err)
	old := presence.New()
	_, err = old.ReadFrom(bytes.NewReader(v1))
	require.NoError(t, err)
	assert.Equal(t, 20, old.Len())
	meta, _ := old.Get("user-3")
	assert.Equal(t, "meta", meta.Meta)
	assert.Equal(t, 0, old.Stats().Rooms)

	// Expired memberships are left out of a snapshot.
	clk := newClock()
	ret := presence.New(presence.WithClock(clk.Now), presence.WithRetention(time.Minute))
	ret.TouchIn("old", "u")
	clk.Advance(2 * time.Minute)
	ret.TouchIn("new", "u")
	back := presence.New(presence.WithClock(clk.Now), presence.WithRetention(time.Minute))
	_, err = back.ReadFrom(bytes.NewReader(snapshotOf(t, ret)))
	require.NoError(t, err)
	assert.Equal(t, []string{"new"}, back.RoomsOf("u"))
	assert.NotContains(t, string(snapshotOf(t, ret)), "old")
}
