package presence_test

import (
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/onlinenow/presence"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeClock is a clock tests move by hand; safe for concurrent use.
type fakeClock struct{ ns atomic.Int64 }

var t0 = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func newClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(t0.UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

func ids(as []presence.Activity) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.ID
	}
	return out
}

func TestTouchAndGet(t *testing.T) {
	clk := newClock()
	e := presence.New(presence.WithClock(clk.Now))
	defer e.Close()

	_, ok := e.Get("alice")
	assert.False(t, ok, "unknown user")

	e.Touch("alice")
	a, ok := e.Get("alice")
	require.True(t, ok)
	assert.Equal(t, "alice", a.ID)
	assert.True(t, a.LastSeen.Equal(t0))
	assert.Equal(t, time.UTC, a.LastSeen.Location())

	clk.Advance(1500 * time.Millisecond)
	e.Touch("alice")
	ls, ok := e.LastSeen("alice")
	require.True(t, ok)
	assert.True(t, ls.Equal(t0.Add(1500*time.Millisecond)), "LastSeen is exact, not rounded to the resolution")
	assert.Equal(t, 1, e.Len())
}

func TestTouchAtNeverMovesBackwards(t *testing.T) {
	e := presence.New()
	e.TouchAt("u", t0)
	e.TouchAt("u", t0.Add(-time.Hour))
	ls, _ := e.LastSeen("u")
	assert.True(t, ls.Equal(t0))
	e.TouchAt("u", t0.Add(time.Nanosecond))
	ls, _ = e.LastSeen("u")
	assert.True(t, ls.Equal(t0.Add(time.Nanosecond)))
}

func TestBadInput(t *testing.T) {
	e := presence.New()
	tests := []struct {
		name   string
		touch  func()
		reject uint64
		users  int
	}{
		{"empty id", func() { e.Touch("") }, 1, 0},
		{"empty id at", func() { e.TouchAt("", t0) }, 1, 0},
		{"id too long", func() { e.Touch(strings.Repeat("x", presence.MaxIDLen+1)) }, 1, 0},
		{"id at the limit", func() { e.Touch(strings.Repeat("x", presence.MaxIDLen)) }, 0, 1},
		{"zero time", func() { e.TouchAt("z", time.Time{}) }, 0, 0},
		{"year 3000", func() { e.TouchAt("y", time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)) }, 0, 0},
		{"year 1000", func() { e.TouchAt("y", time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC)) }, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := e.Stats()
			tt.touch()
			after := e.Stats()
			assert.Equal(t, tt.reject, after.RejectedIDs-before.RejectedIDs)
			assert.Equal(t, tt.users, after.Users-before.Users)
		})
	}
	_, ok := e.Get("z")
	assert.False(t, ok)
}

func TestSetMeta(t *testing.T) {
	e := presence.New()
	assert.False(t, e.SetMeta("nobody", "x"), "unknown user")
	e.TouchAt("u", t0)
	assert.True(t, e.SetMeta("u", "10.0.0.1"))
	a, _ := e.Get("u")
	assert.Equal(t, "10.0.0.1", a.Meta)
	assert.False(t, e.SetMeta("u", strings.Repeat("m", presence.MaxMetaLen+1)), "meta too long")
	assert.True(t, e.SetMeta("u", strings.Repeat("m", presence.MaxMetaLen)))
	assert.True(t, e.SetMeta("u", ""))
	a, _ = e.Get("u")
	assert.Equal(t, "", a.Meta)

	assert.True(t, e.SetMeta("u", "same"))
	allocs := testing.AllocsPerRun(100, func() { e.SetMeta("u", "same") })
	assert.Zero(t, allocs, "setting unchanged meta allocates nothing")
}

func TestCountAndRecent(t *testing.T) {
	clk := newClock()
	e := presence.New(presence.WithClock(clk.Now), presence.WithShards(4))
	for i := range 10 { // u0 at t0-9m ... u9 at t0
		e.TouchAt(fmt.Sprintf("u%d", i), t0.Add(time.Duration(i-9)*time.Minute))
	}
	tests := []struct {
		window time.Duration
		limit  int
		want   []string
	}{
		{time.Minute, 0, []string{"u9", "u8"}},
		{90 * time.Second, 0, []string{"u9", "u8"}},
		{5 * time.Minute, 3, []string{"u9", "u8", "u7"}},
		{time.Hour, -1, []string{"u9", "u8", "u7", "u6", "u5", "u4", "u3", "u2", "u1", "u0"}},
		{0, 0, []string{"u9"}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.window, tt.limit), func(t *testing.T) {
			assert.Equal(t, tt.want, ids(e.Recent(tt.window, tt.limit)))
			if tt.limit <= 0 {
				assert.Equal(t, len(tt.want), e.Count(tt.window))
			}
		})
	}
	assert.Equal(t, 10, e.CountSince(time.Time{}), "zero time counts everyone")
	assert.Equal(t, 0, e.CountSince(t0.Add(time.Second)))
}

func TestCountAtResolution(t *testing.T) {
	clk := newClock()
	e := presence.New(presence.WithClock(clk.Now), presence.WithResolution(time.Minute))
	e.TouchAt("early", t0.Add(10*time.Second))
	e.TouchAt("late", t0.Add(50*time.Second))
	// Both share the slot [t0, t0+1m): a query from inside it counts both.
	assert.Equal(t, 2, e.CountSince(t0.Add(30*time.Second)))
	assert.Equal(t, 0, e.CountSince(t0.Add(time.Minute)))
}

func TestForgetAndPrune(t *testing.T) {
	e := presence.New()
	for i := range 100 {
		e.TouchAt(fmt.Sprint(i), t0.Add(time.Duration(i)*time.Second))
	}
	assert.True(t, e.Forget("5"))
	assert.False(t, e.Forget("5"))
	assert.False(t, e.Forget("nobody"))
	_, ok := e.Get("5")
	assert.False(t, ok)

	assert.Equal(t, 49, e.Prune(t0.Add(50*time.Second)), "0..49 less the forgotten 5")
	assert.Equal(t, 50, e.Len())
	assert.Equal(t, 50, e.CountSince(time.Time{}))
	_, ok = e.Get("49")
	assert.False(t, ok)
	_, ok = e.Get("50")
	assert.True(t, ok)
	assert.Equal(t, 0, e.Prune(time.Time{}))

	// Prune is exact inside a slot, not only at slot boundaries.
	e2 := presence.New(presence.WithResolution(time.Hour))
	e2.TouchAt("a", t0.Add(time.Second))
	e2.TouchAt("b", t0.Add(3*time.Second))
	assert.Equal(t, 1, e2.Prune(t0.Add(2*time.Second)))
	_, ok = e2.Get("b")
	assert.True(t, ok)

	// Prune goes on past one lock hold's batch (1,024 users), across slots
	// and within one.
	for _, res := range []time.Duration{time.Millisecond, time.Hour} {
		e3 := presence.New(presence.WithShards(1), presence.WithResolution(res))
		for i := range 5000 {
			e3.TouchAt(fmt.Sprint(i), t0.Add(time.Duration(i)*time.Millisecond))
		}
		assert.Equal(t, 3000, e3.Prune(t0.Add(3000*time.Millisecond)), "resolution %v", res)
		assert.Equal(t, 2000, e3.Len(), "resolution %v", res)
		assert.Equal(t, 2000, e3.CountSince(time.Time{}), "resolution %v", res)
	}
	// Within one slot, users seen since t stay, wherever the batches
	// stop: here every third user, seen again after t, is filed among
	// users seen before it.
	e4 := presence.New(presence.WithShards(1), presence.WithResolution(time.Hour))
	for i := range 5000 {
		e4.TouchAt(fmt.Sprint(i), t0.Add(time.Duration(i)*time.Millisecond))
	}
	for i := 0; i < 5000; i += 3 {
		e4.TouchAt(fmt.Sprint(i), t0.Add(10*time.Second))
	}
	assert.Equal(t, 3333, e4.Prune(t0.Add(5*time.Second)))
	for i := range 5000 {
		_, ok := e4.Get(fmt.Sprint(i))
		require.Equal(t, i%3 == 0, ok, "user %d", i)
	}
	assert.Equal(t, 1667, e4.CountSince(time.Time{}))
	// The same where users share whole index keys (one instant, IDs of one
	// length, 16 tie values at 1ms): a batch ends among users of its last
	// key, and the next must start right after that user, not its key.
	e5 := presence.New(presence.WithShards(1), presence.WithResolution(time.Millisecond))
	for i := range 5000 {
		e5.TouchAt(fmt.Sprintf("u%04d", i), t0)
	}
	for i := 0; i < 5000; i += 3 {
		e5.TouchAt(fmt.Sprintf("u%04d", i), t0.Add(500*time.Microsecond))
	}
	assert.Equal(t, 3333, e5.Prune(t0.Add(250*time.Microsecond)))
	for i := range 5000 {
		_, ok := e5.Get(fmt.Sprintf("u%04d", i))
		require.Equal(t, i%3 == 0, ok, "user %d", i)
	}

	st := e.Stats()
	assert.Equal(t, uint64(1), st.Forgotten)
	assert.Equal(t, uint64(49), st.Pruned)
	assert.Equal(t, uint64(100), st.Inserted)

	// A forgotten user touched again comes back.
	e.TouchAt("5", t0)
	_, ok = e.Get("5")
	assert.True(t, ok)
}

func TestRetention(t *testing.T) {
	clk := newClock()
	e := presence.New(presence.WithClock(clk.Now), presence.WithRetention(10*time.Minute))
	e.Touch("old")
	clk.Advance(5 * time.Minute)
	e.Touch("new")
	assert.Equal(t, 2, e.Len())

	clk.Advance(6 * time.Minute) // "old" is now 11 minutes idle
	_, ok := e.Get("old")
	assert.False(t, ok, "expired users vanish from Get at once")
	assert.Equal(t, 1, e.Len())
	assert.Equal(t, 1, e.Count(time.Hour))
	assert.Equal(t, []string{"new"}, ids(e.Recent(time.Hour, 0)))

	// Later writes reclaim the memory.
	for i := range 100 {
		e.Touch(fmt.Sprint("x", i))
	}
	assert.Equal(t, uint64(1), e.Stats().Expired)
}

// TestRetentionFollowsTheClock: retention counts from the engine's clock, not
// from the newest time it was given. A TouchAt an hour ahead (a peer's
// clock, a snapshot from a node whose clock runs fast) must not expire the
// users that the clock says are recent, nor the ones touched after it.
func TestRetentionFollowsTheClock(t *testing.T) {
	clk := newClock()
	e := presence.New(presence.WithClock(clk.Now), presence.WithRetention(10*time.Minute), presence.WithShards(1))
	e.Touch("a")
	e.TouchAt("ahead", clk.Now().Add(time.Hour))
	e.Touch("b")
	for _, id := range []string{"a", "ahead", "b"} {
		_, ok := e.Get(id)
		assert.True(t, ok, id)
	}
	assert.Equal(t, 3, e.Len())
	assert.Zero(t, e.Stats().Expired)

	clk.Advance(11 * time.Minute) // a and b expire; ahead does not
	e.Touch("c")                  // an insert reclaims what has expired
	assert.Equal(t, []string{"ahead", "c"}, ids(e.Recent(2*time.Hour, 0)))
	assert.Equal(t, uint64(2), e.Stats().Expired)
}

// TestExpiredIsForgotten: a user that has expired is gone, as if forgotten,
// whether or not its memory has been reclaimed yet: SetMeta and Forget do
// not know it, Prune does not count it, and touched again it comes back as
// a new user without its old meta.
func TestExpiredIsForgotten(t *testing.T) {
	clk := newClock()
	e := presence.New(presence.WithClock(clk.Now), presence.WithRetention(time.Minute), presence.WithShards(1))
	for _, id := range []string{"a", "b", "c", "d", "e"} {
		if id == "d" {
			clk.Advance(10 * time.Second) // d is out of the Prune below
		}
		e.Touch(id)
		require.True(t, e.SetMeta(id, "meta of "+id))
	}
	clk.Advance(2 * time.Minute) // all five expire; no write has reclaimed them
	assert.False(t, e.SetMeta("a", "new"), "SetMeta of an expired user")
	assert.False(t, e.SetMeta("b", "meta of b"), "SetMeta of an expired user, same meta")
	assert.False(t, e.Forget("c"), "Forget of an expired user")
	assert.Zero(t, e.Prune(t0.Add(5*time.Second)), "Prune counts only users that had not expired")
	e.Touch("d")
	d, ok := e.Get("d")
	require.True(t, ok)
	assert.Empty(t, d.Meta, "a returning user is a new user")
	assert.Equal(t, 1, e.Len())
	assert.Equal(t, uint64(5), e.Stats().Expired)

	// The oldest slot still inside the retention has not expired: its user,
	// touched again, keeps its meta.
	require.True(t, e.SetMeta("d", "kept"))
	clk.Advance(time.Minute)
	e.Touch("d")
	d, ok = e.Get("d")
	require.True(t, ok)
	assert.Equal(t, "kept", d.Meta)
	assert.Equal(t, uint64(5), e.Stats().Expired)
}

// TestRetentionFloorSlot: users in the oldest slot still inside the
// retention have not expired. SetMeta, Forget and Prune know them, and one
// touched again keeps its meta.
func TestRetentionFloorSlot(t *testing.T) {
	clk := newClock()
	e := presence.New(presence.WithClock(clk.Now), presence.WithRetention(time.Minute), presence.WithShards(1))
	for _, id := range []string{"p", "q", "r", "s"} {
		e.Touch(id)
		require.True(t, e.SetMeta(id, "m"))
	}
	clk.Advance(time.Minute) // their slot is now the oldest inside the retention
	assert.True(t, e.SetMeta("p", "m"), "the same meta")
	assert.True(t, e.SetMeta("q", "new"))
	assert.True(t, e.Forget("r"))
	e.Touch("s")
	s, ok := e.Get("s")
	require.True(t, ok)
	assert.Equal(t, "m", s.Meta)
	assert.Equal(t, 2, e.Prune(t0.Add(time.Nanosecond)), "p and q")
	assert.Zero(t, e.Stats().Expired)
}

func TestMaxUsersEvictsLeastRecent(t *testing.T) {
	e := presence.New(presence.WithMaxUsers(3))
	e.TouchAt("a", t0)
	e.TouchAt("b", t0.Add(time.Second))
	e.TouchAt("c", t0.Add(2*time.Second))
	e.TouchAt("a", t0.Add(3*time.Second)) // a is now the most recent
	e.TouchAt("d", t0.Add(4*time.Second)) // evicts b
	assert.Equal(t, 3, e.Len())
	_, ok := e.Get("b")
	assert.False(t, ok)
	assert.Equal(t, []string{"d", "a", "c"}, ids(e.Recent(24*time.Hour*365*100, 0)))
	assert.Equal(t, uint64(1), e.Stats().Evicted)
}

func TestEvictionFlood(t *testing.T) {
	n, limit := 1_000_000, 10_000
	if testing.Short() {
		n = 100_000
	}
	e := presence.New(presence.WithMaxUsers(limit), presence.WithResolution(time.Millisecond))
	for i := range n {
		e.TouchAt(fmt.Sprint("flood-", i), t0.Add(time.Duration(i)*time.Millisecond))
		if i%1000 == 0 {
			require.LessOrEqual(t, e.Len(), limit)
		}
	}
	require.Equal(t, limit, e.Len())
	all, _ := e.Page(time.Time{}, presence.Cursor{}, 0)
	require.Len(t, all, limit)
	for i, a := range all { // the survivors are the most recent, newest first
		assert.Equal(t, fmt.Sprint("flood-", n-1-i), a.ID)
	}
	assert.Equal(t, uint64(n-limit), e.Stats().Evicted)
	require.NoError(t, presence.CheckInvariants(e))
}

// TestEvictionOrderWithTies: users who share one time, and at a 1ms
// resolution often their whole index key, spread over shards, are evicted
// in the index's order (by ID within a key), as Page lists them oldest
// last, whichever shard holds each.
func TestEvictionOrderWithTies(t *testing.T) {
	const limit = 64
	e := presence.New(presence.WithShards(8), presence.WithResolution(time.Millisecond), presence.WithMaxUsers(limit))
	for i := range limit {
		e.TouchAt(fmt.Sprintf("u%02d", i), t0)
	}
	all, _ := e.Page(time.Time{}, presence.Cursor{}, 0)
	order := ids(all)
	slices.Reverse(order) // oldest first: the order of eviction
	for i := range limit {
		e.TouchAt(fmt.Sprintf("n%02d", i), t0.Add(time.Second))
		_, ok := e.Get(order[i])
		require.False(t, ok, "new user %d should have evicted %s", i, order[i])
		if i+1 < limit {
			_, ok = e.Get(order[i+1])
			require.True(t, ok, "new user %d evicted %s, which is not the oldest", i, order[i+1])
		}
		require.NoError(t, presence.CheckInvariants(e))
	}
}

// TestCounterMemory: the per-slot counters take memory for the blocks of
// slots that hold users, not for the whole ring in every shard (512 KiB a
// shard; 256 shards are the default at 64 cores), and give it back when
// the users move on.
func TestCounterMemory(t *testing.T) {
	clk := newClock()
	const shards = 64
	e := presence.New(presence.WithShards(shards), presence.WithClock(clk.Now))
	for i := range 10_000 {
		e.Touch(fmt.Sprint("u", i))
	}
	assert.Equal(t, shards, presence.CounterBlocks(e), "one block a shard: every user is in one slot")
	clk.Advance(3 * time.Hour) // 10,800 slots: past the next block
	for i := range 10_000 {
		e.Touch(fmt.Sprint("u", i))
	}
	assert.Equal(t, shards, presence.CounterBlocks(e), "the old blocks are given back")
	assert.Equal(t, 10_000, e.Count(time.Minute))
	require.NoError(t, presence.CheckInvariants(e))

	// A lone user moving ahead within a block does not free and allocate
	// its counters on every move.
	solo := presence.New(presence.WithShards(1), presence.WithClock(clk.Now))
	solo.Touch("solo")
	assert.Zero(t, testing.AllocsPerRun(100, func() {
		clk.Advance(time.Second)
		solo.Touch("solo")
	}))

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	big := presence.New(presence.WithShards(256))
	for i := range 1000 {
		big.Touch(fmt.Sprint("u", i))
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	assert.Less(t, after.HeapAlloc-before.HeapAlloc, uint64(16<<20), "1,000 users in 256 shards")
	runtime.KeepAlive(big)
}

// Paging's contract (exactly once across pages under ties and touches, the
// last page's cursor, limits, bad cursors) is checked by presencetest,
// which runs against the engine through presencehttp.FromEngine.

func TestSinceIterator(t *testing.T) {
	e := presence.New()
	for i := range 1000 {
		e.TouchAt(fmt.Sprint(i), t0.Add(time.Duration(i)*time.Second))
	}
	var got []string
	for a := range e.Since(t0.Add(900 * time.Second)) {
		got = append(got, a.ID)
	}
	require.Len(t, got, 100)
	assert.Equal(t, "999", got[0])
	assert.Equal(t, "900", got[99])

	n := 0
	for range e.Since(time.Time{}) {
		n++
		if n == 300 {
			break // stopping early must not panic
		}
	}
	assert.Equal(t, 300, n)
}

// TestOrderWithinSlot: within a slot, users come newest first by the time
// they entered it (in steps of 2ms at 1s resolution); a later touch in the
// same slot does not reorder (the index moves only when the slot changes),
// one in a new slot does.
func TestOrderWithinSlot(t *testing.T) {
	clk := newClock() // the windows below end at t0, whenever the test runs
	e := presence.New(presence.WithShards(2), presence.WithClock(clk.Now))
	for i, id := range []string{"a", "b", "c", "d"} {
		e.TouchAt(id, t0.Add(time.Duration(i)*100*time.Millisecond)) // all in t0's second
	}
	e.TouchAt("b", t0.Add(900*time.Millisecond)) // same slot: stays in place
	assert.Equal(t, []string{"d", "c", "b", "a"}, ids(everything(e)))
	got, _ := e.LastSeen("b")
	assert.Equal(t, t0.Add(900*time.Millisecond), got, "the time itself is exact")

	e.TouchAt("a", t0.Add(1500*time.Millisecond)) // a new slot: to the front
	assert.Equal(t, []string{"a", "d", "c", "b"}, ids(everything(e)))

	// Users filed at the same moment are in a fixed order (by a hash of
	// the ID), whatever the order of their touches.
	other := presence.New(presence.WithClock(clk.Now))
	for _, id := range []string{"x", "y", "z"} {
		e.TouchAt(id, t0.Add(2*time.Second))
	}
	for _, id := range []string{"z", "y", "x"} {
		other.TouchAt(id, t0.Add(2*time.Second))
	}
	assert.Equal(t, ids(other.Recent(time.Hour, 3)), ids(e.Recent(time.Hour, 3)))
	assert.ElementsMatch(t, []string{"x", "y", "z"}, ids(e.Recent(time.Hour, 3)))
}

func TestCursorText(t *testing.T) {
	var c presence.Cursor
	// A position names its ID's length: "AmI" is position 1 (a 1-byte ID)
	// and "b"; "AmJi" has "bb" and "BGI" position 2 with "b".
	require.NoError(t, c.UnmarshalText([]byte("AmI")))
	assert.Equal(t, "AmI", c.String())
	c = presence.Cursor{}
	for _, bad := range []string{"!!!", "AA", strings.Repeat("A", 2000), "_w", "AmJi", "BGI"} {
		err := c.UnmarshalText([]byte(bad))
		assert.ErrorIs(t, err, presence.ErrInvalidCursor, bad)
		assert.True(t, c.IsZero(), "a failed decode leaves the cursor unchanged")
	}
	require.NoError(t, c.UnmarshalText(nil))
	assert.True(t, c.IsZero())
	assert.Equal(t, "", c.String())
}

func TestWindowPastIndexHorizon(t *testing.T) {
	// At 1ms resolution the slot counters cover about 131s; older users are
	// counted by walking the index. Both paths must agree with the truth.
	clk := newClock()
	e := presence.New(presence.WithClock(clk.Now), presence.WithResolution(time.Millisecond), presence.WithShards(2))
	for i := range 600 { // one user per second over 10 minutes, the clock along
		clk.ns.Store(t0.Add(time.Duration(i) * time.Second).UnixNano())
		e.Touch(fmt.Sprint(i))
	}
	clk.Advance(time.Second)
	for _, w := range []time.Duration{time.Second, 100 * time.Second, 200 * time.Second, 599 * time.Second, time.Hour} {
		want := min(int(w/time.Second), 600)
		assert.Equal(t, want, e.Count(w), w)
	}
	// A jump far beyond the horizon folds the whole ring into the old count.
	clk.ns.Store(t0.Add(24 * time.Hour).UnixNano())
	e.Touch("future")
	assert.Equal(t, 601, e.CountSince(t0))
	assert.Equal(t, 301, e.CountSince(t0.Add(300*time.Second)))
}

// TestCountsAtRingEdge counts around the edge of the counters' ring, which
// holds the newest slot and the RingSlots-1 before it (at 1ms, 131s): users
// in the first slot outside the ring and two slots either side of it,
// filed before and after the newest user moved the ring, then forgotten one
// by one. Every count from every slot nearby must match a plain count of
// the users' slots.
func TestCountsAtRingEdge(t *testing.T) {
	head := t0.Add(200 * time.Second)
	edge := head.Add(-presence.RingSlots * time.Millisecond) // the slot that just left the ring
	for _, headFirst := range []bool{true, false} {
		e := presence.New(presence.WithResolution(time.Millisecond), presence.WithShards(1))
		want := map[string]time.Time{}
		touch := func(id string, at time.Time) {
			e.TouchAt(id, at)
			want[id] = at
		}
		if headFirst {
			touch("head", head)
		}
		for k := -2; k <= 2; k++ {
			touch(fmt.Sprint("edge", k), edge.Add(time.Duration(k)*time.Millisecond))
		}
		if !headFirst {
			touch("head", head)
		}
		check := func(stage string) {
			t.Helper()
			for k := -4; k <= 4; k++ {
				from := edge.Add(time.Duration(k) * time.Millisecond)
				n := 0
				for _, at := range want {
					if !at.Before(from) {
						n++
					}
				}
				assert.Equal(t, n, e.CountSince(from), "head first %v, %s, from edge%+d", headFirst, stage, k)
			}
		}
		check("all")
		for k := -2; k <= 2; k++ {
			id := fmt.Sprint("edge", k)
			require.True(t, e.Forget(id))
			delete(want, id)
			check("without " + id)
		}
	}
}

// TestRetentionBoundary steps the clock a quarter slot at a time past users
// a quarter slot apart. A user is visible exactly while its slot is no older
// than the slot of now minus the retention, and writes reclaim exactly the
// users no longer visible, never one still visible: new users (inserts) and
// a user whose slot changes (moves) both reclaim.
func TestRetentionBoundary(t *testing.T) {
	const retention, res = 10 * time.Second, time.Second
	slot := func(at time.Time) int64 { return at.UnixNano() / int64(res) }
	for _, write := range []string{"insert", "move"} {
		clk := newClock()
		e := presence.New(presence.WithClock(clk.Now), presence.WithRetention(retention), presence.WithShards(1))
		users := map[string]time.Time{}
		for i := range 20 {
			id := fmt.Sprint("u", i)
			users[id] = t0.Add(time.Duration(i) * res / 4)
			e.TouchAt(id, users[id])
		}
		clk.Advance(retention)
		for step := range 24 {
			now := clk.Now()
			visible := func(stage string) int {
				t.Helper()
				n := 0
				for id, at := range users {
					_, ok := e.Get(id)
					wantOK := slot(at) >= slot(now.Add(-retention))
					require.Equal(t, wantOK, ok, "%s: %s at +%v, now +%v", stage, id, at.Sub(t0), now.Sub(t0))
					if ok {
						n++
					}
				}
				return n
			}
			visible("before the write")
			if write == "insert" {
				e.Touch(fmt.Sprint("writer", step)) // a new user: an insert
			} else {
				e.Touch("mover") // the same user: a move when its slot changes
			}
			n := visible("after the write")
			writers := 1
			if write == "insert" {
				writers = step + 1 // none has expired yet: 24 steps are 6s
			}
			assert.Equal(t, n+writers, e.Count(time.Hour), "now +%v", now.Sub(t0))
			if write == "insert" || slot(now) != slot(now.Add(-res/4)) {
				// Every write reclaims up to the oldest visible slot; the
				// mover only writes when its slot changes.
				assert.Equal(t, uint64(len(users)-n), e.Stats().Expired, "%s at +%v", write, now.Sub(t0))
			}
			clk.Advance(res / 4)
		}
	}
}

func TestCloseIsIdempotent(t *testing.T) {
	e := presence.New()
	require.NoError(t, e.Close())
	require.NoError(t, e.Close())
	e.Touch("after")
	assert.Equal(t, 1, e.Len())
}

// TestItemLayout pins the index item's size, which the memory per user
// depends on (see the comment on item).
func TestItemLayout(t *testing.T) {
	assert.Equal(t, uintptr(16), presence.ItemSize)
}

// TestCountsExactAcrossHeadJumps moves each shard's counter horizon forward
// by just under its length again and again, as a hostile snapshot could. The
// counts must stay exact; each move now skips the empty ring in blocks instead
// of walking it slot by slot (this test: 0.02s, against 2.2s before).
// TestTimesAheadOfTheClock: users seen at times far ahead of the clock (a
// skewed clock, bad input) are counted exactly, and do not push the present
// off the counters' ring: counting the last 15 minutes still reads counters
// rather than walking the index, before and after they are forgotten. When
// the clock reaches them they join the ring.
func TestTimesAheadOfTheClock(t *testing.T) {
	clk := newClock()
	e := presence.New(presence.WithClock(clk.Now), presence.WithShards(4))
	ahead := func(i int) string { return fmt.Sprint("ahead", i) }
	e.TouchAt(ahead(0), t0.Add(48*time.Hour)) // the first user some shard files
	for i := range 1000 {
		e.TouchAt(fmt.Sprint("u", i), t0.Add(-time.Duration(i)*time.Second))
	}
	for i := 1; i < 16; i++ {
		e.TouchAt(ahead(i), t0.Add(48*time.Hour+time.Duration(i)*time.Hour))
	}
	check := func(stage string, present, later int) {
		t.Helper()
		assert.Equal(t, present+later, e.Count(15*time.Minute), stage)
		assert.False(t, presence.CountWalks(e, clk.Now().Add(-15*time.Minute)), stage)
		assert.Equal(t, later, e.CountSince(clk.Now().Add(time.Hour)), stage)
		assert.Equal(t, later, e.CountSince(t0.Add(48*time.Hour)), stage+": from the first one's slot")
		assert.Equal(t, 1000+later, e.Len(), stage)
		require.NoError(t, presence.CheckInvariants(e), stage)
	}
	check("ahead", 901, 16)
	for i := 8; i < 16; i++ {
		e.Forget(ahead(i))
	}
	check("some forgotten", 901, 8)

	// The clock reaches 55h30m, past the users left ahead (48h to 55h): they
	// join the ring as the shards count touches of the present.
	clk.Advance(55*time.Hour + 30*time.Minute)
	for i := range 100 { // every shard counts one, but for odds of 1e-12
		e.Touch(fmt.Sprint("now", i))
	}
	assert.Equal(t, 100, e.Count(15*time.Minute))
	assert.Equal(t, 108, e.CountSince(t0.Add(48*time.Hour)))
	assert.Zero(t, e.CountSince(clk.Now().Add(time.Minute)))
	assert.False(t, presence.CountWalks(e, t0.Add(47*time.Hour)))
	require.NoError(t, presence.CheckInvariants(e))
	assert.Zero(t, presence.UsersAhead(e), "none left ahead")
}

func TestCountsExactAcrossHeadJumps(t *testing.T) {
	clk := newClock()
	e := presence.New(presence.WithClock(clk.Now), presence.WithShards(1), presence.WithResolution(time.Millisecond))
	const n, step = 20_000, 131 * time.Second // the ring covers 131.072s
	// Each touch at the clock's time, so that every one moves the head.
	for i := range n {
		clk.ns.Store(t0.Add(time.Duration(i) * step).UnixNano())
		e.Touch(fmt.Sprint(i))
	}
	clk.Advance(step)
	assert.Equal(t, n, e.CountSince(time.Time{}))
	assert.Equal(t, 2, e.CountSince(t0.Add(time.Duration(n-2)*step)))
	assert.Equal(t, n/2, e.CountSince(t0.Add(time.Duration(n/2)*step)))
}
