package presence_test

import (
	"bytes"
	"cmp"
	"fmt"
	"io"
	"maps"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/onlinenow/presence"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// model is the obvious implementation: a map, and a sort per query. The
// engine must answer every query exactly as it does.
type model struct {
	res, retention int64
	cap            int // WithMaxUsers; only without retention, whose reclaiming the model does not follow
	users          map[string]*modelUser
	// inSlot is the engine's order within a slot.
	inSlot func(a string, ua *modelUser, b string, ub *modelUser) int
}

type modelUser struct {
	ls    int64
	filed int64 // the time the user entered its slot: the first touch in it
	meta  string
}

func newModel(res, retention time.Duration) *model {
	return &model{res: int64(res), retention: int64(retention), users: map[string]*modelUser{}}
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b < 0 {
		q--
	}
	return q
}

// touch records id at ns, as the engine would with its clock at now. A user
// that has expired is gone, as if forgotten: touched again, it comes back
// as a new user, without its meta.
func (m *model) touch(id string, ns, now int64) {
	if u, ok := m.users[id]; !ok || (ns > u.ls && !m.visible(u, math.MinInt64, now)) {
		if !ok && m.cap > 0 && len(m.users) >= m.cap {
			delete(m.users, m.oldest()) // the least recently seen makes room
		}
		m.users[id] = &modelUser{ls: ns, filed: ns}
	} else if ns > u.ls {
		if floorDiv(ns, m.res) != floorDiv(u.ls, m.res) {
			u.filed = ns
		}
		u.ls = ns
	}
}

// merge is ReadFrom of a snapshot holding users, at now: for each user the
// newer time wins, with its meta (the larger meta on a tie); users that have
// expired since are passed over, and an expired user comes back as new.
// Under a cap, records go newest first in the index's order, a new user
// evicting the oldest held, until the oldest held is newer than every
// record left.
func (m *model) merge(users map[string]modelUser, now int64) {
	ids := slices.Collect(maps.Keys(users))
	slices.SortFunc(ids, func(a, b string) int {
		ua, ub := users[a], users[b]
		ua.filed, ub.filed = ua.ls, ub.ls
		return m.order(b, &ub, a, &ua)
	})
	for _, id := range ids {
		rec := users[id]
		if !m.visible(&rec, math.MinInt64, now) {
			continue
		}
		u, ok := m.users[id]
		if !ok && m.cap > 0 && len(m.users) >= m.cap {
			first := m.oldest()
			if m.order(first, m.users[first], id, &modelUser{ls: rec.ls, filed: rec.ls}) >= 0 {
				break // full of users newer than every record left
			}
			delete(m.users, first)
		}
		switch {
		case !ok || !m.visible(u, math.MinInt64, now):
			m.users[id] = &modelUser{ls: rec.ls, filed: rec.ls, meta: rec.meta}
		case rec.ls > u.ls:
			m.touch(id, rec.ls, now)
			u.meta = rec.meta
		case rec.ls == u.ls && rec.meta > u.meta:
			u.meta = rec.meta
		}
	}
}

// order compares two users as the engine's index orders them: by slot,
// then as filed within it.
func (m *model) order(a string, ua *modelUser, b string, ub *modelUser) int {
	return cmp.Or(cmp.Compare(floorDiv(ua.ls, m.res), floorDiv(ub.ls, m.res)), m.inSlot(a, ua, b, ub))
}

// oldest returns the user that comes first in the engine's index.
func (m *model) oldest() string {
	var id string
	for i, v := range m.users {
		if id == "" || m.order(i, v, id, m.users[id]) < 0 {
			id = i
		}
	}
	return id
}

// restart is what a snapshot written at now and read back keeps: the users
// that had not expired, with their meta, each filed at its last-seen time.
func (m *model) restart(now int64) {
	for id, u := range m.users {
		if !m.visible(u, math.MinInt64, now) {
			delete(m.users, id)
		}
		u.filed = u.ls
	}
}

// filedBy orders users within a slot by the model's own filing times.
func filedBy(e *presence.Engine) func(string, *modelUser, string, *modelUser) int {
	return func(a string, ua *modelUser, b string, ub *modelUser) int {
		return presence.CompareFiled(e, ua.filed, a, ub.filed, b)
	}
}

// visible reports whether u is seen at or after slot from, and not expired.
func (m *model) visible(u *modelUser, from, now int64) bool {
	s := floorDiv(u.ls, m.res)
	if m.retention > 0 && s < floorDiv(now-m.retention, m.res) {
		return false
	}
	return s >= from
}

func (m *model) since(t time.Time, now int64) []presence.Activity {
	from := int64(math.MinInt64)
	if !t.IsZero() {
		from = floorDiv(t.UnixNano(), m.res)
	}
	type held struct {
		id string
		u  *modelUser
	}
	var in []held
	for id, u := range m.users {
		if m.visible(u, from, now) {
			in = append(in, held{id, u})
		}
	}
	slices.SortFunc(in, func(a, b held) int { return m.order(b.id, b.u, a.id, a.u) }) // newest first
	var out []presence.Activity
	for _, h := range in {
		out = append(out, presence.Activity{ID: h.id, LastSeen: time.Unix(0, h.u.ls).UTC(), Meta: h.u.meta})
	}
	return out
}

// checkAll compares every query the engine answers with the model's.
func checkAll(t *testing.T, e *presence.Engine, m *model, now int64, rng *rand.Rand, withMeta bool) {
	t.Helper()
	strip := func(as []presence.Activity) []presence.Activity {
		if !withMeta {
			for i := range as {
				as[i].Meta = ""
			}
		}
		return as
	}
	all := m.since(time.Time{}, now)
	require.Equal(t, len(all), e.Len(), "Len")

	for range 4 {
		w := time.Duration(rng.Int64N(int64(3 * time.Hour)))
		since := time.Unix(0, now).Add(-w)
		want := m.since(since, now)
		require.Equal(t, len(want), e.Count(w), "Count(%v)", w)
		require.Equal(t, len(want), e.CountSince(since), "CountSince")
		later := time.Unix(0, now).Add(w) // users ahead of the clock
		require.Equal(t, len(m.since(later, now)), e.CountSince(later), "CountSince(now+%v)", w)
		limit := rng.IntN(20) - 2
		got := strip(e.Recent(w, limit))
		if limit > 0 && len(want) > limit {
			want = want[:limit]
		}
		want = strip(want)
		if len(want) == 0 {
			want = []presence.Activity{}
		}
		require.Equal(t, want, got, "Recent(%v, %d)", w, limit)
	}

	size := 1 + rng.IntN(50)
	paged := allPages(func(c presence.Cursor) ([]presence.Activity, presence.Cursor) { return e.Page(time.Time{}, c, size) })
	if len(all) == 0 {
		all = nil
	}
	require.Equal(t, strip(all), strip(paged), "paged walk")
	streamed := slices.Collect(e.Since(time.Time{}))
	require.Equal(t, strip(all), strip(streamed), "Since")

	for range 5 {
		var id string
		if len(all) > 0 && rng.IntN(4) > 0 {
			id = all[rng.IntN(len(all))].ID
		} else {
			id = fmt.Sprint("u", rng.IntN(500))
		}
		u, ok := m.users[id]
		visible := ok && m.visible(u, math.MinInt64, now)
		a, got := e.Get(id)
		require.Equal(t, visible, got, "Get(%s)", id)
		if visible {
			require.Equal(t, u.ls, a.LastSeen.UnixNano(), "Get(%s).LastSeen", id)
			if withMeta {
				require.Equal(t, u.meta, a.Meta)
			}
		}
	}
}

// modelOp is one step of a run against the model.
type modelOp struct {
	kind opKind
	id   string
	d    time.Duration // opTouchAt: from now (negative: the past); opPrune: back from now; opAdvance: forward
	meta string
	n    int // opPage: the page's size
}

type opKind uint8

const (
	opTouch opKind = iota
	opTouchAt
	opSetMeta
	opForget
	opPrune
	opAdvance
	opRestart
	opSave  // a snapshot kept for opMerge
	opMerge // the kept snapshot read into the engine in use
	opPage  // the next page of a walk that goes on across operations
	opKinds
)

// modelRun is an engine and the model it must match.
type modelRun struct {
	e     *presence.Engine
	m     *model
	clk   *fakeClock
	fresh func() *presence.Engine // a new engine with the run's options
	saved []byte                  // opSave's snapshot
	kept  map[string]modelUser    // and the users it holds
	cur   presence.Cursor         // opPage's walk: where it is
	last  *pageMark               // and the user it returned last, as then filed
}

type pageMark struct {
	id    string
	filed int64
}

func newModelRun(res, retention time.Duration, shards, maxUsers int) *modelRun {
	r := &modelRun{m: newModel(res, retention), clk: newClock()}
	r.m.cap = maxUsers
	r.fresh = func() *presence.Engine {
		return presence.New(presence.WithClock(r.clk.Now), presence.WithShards(shards),
			presence.WithResolution(res), presence.WithRetention(retention), presence.WithMaxUsers(maxUsers))
	}
	r.e = r.fresh()
	r.m.inSlot = filedBy(r.e)
	return r
}

// apply does op to the engine and the model, and checks what the engine
// returns.
func (r *modelRun) apply(t *testing.T, op modelOp) {
	t.Helper()
	e, m, clk := r.e, r.m, r.clk
	now := clk.ns.Load()
	switch op.kind {
	case opTouch:
		e.Touch(op.id)
		m.touch(op.id, now, now)
	case opTouchAt:
		at := now + int64(op.d)
		e.TouchAt(op.id, time.Unix(0, at))
		m.touch(op.id, at, now)
	case opSetMeta: // an expired user is unknown, reclaimed yet or not
		u, ok := m.users[op.id]
		ok = ok && m.visible(u, math.MinInt64, now)
		require.Equal(t, ok, e.SetMeta(op.id, op.meta), "SetMeta(%s)", op.id)
		if ok {
			u.meta = op.meta
		}
	case opForget:
		u, ok := m.users[op.id]
		ok = ok && m.visible(u, math.MinInt64, now)
		require.Equal(t, ok, e.Forget(op.id), "Forget(%s)", op.id)
		delete(m.users, op.id)
	case opPrune: // counts the users it removes that had not expired
		before := now - int64(op.d)
		want := 0
		for id, u := range m.users {
			if u.ls < before {
				if m.visible(u, math.MinInt64, now) {
					want++
				}
				delete(m.users, id)
			}
		}
		require.Equal(t, want, e.Prune(time.Unix(0, before)), "Prune(now-%v)", op.d)
	case opAdvance:
		clk.Advance(op.d)
	case opRestart: // a snapshot read back into a new engine, which goes on
		var buf bytes.Buffer
		_, err := e.WriteTo(&buf)
		require.NoError(t, err)
		r.e = r.fresh()
		_, err = r.e.ReadFrom(&buf)
		require.NoError(t, err)
		m.restart(now)
	case opSave:
		var buf bytes.Buffer
		_, err := e.WriteTo(&buf)
		require.NoError(t, err)
		r.saved, r.kept = buf.Bytes(), map[string]modelUser{}
		for id, u := range m.users {
			if m.visible(u, math.MinInt64, now) {
				r.kept[id] = *u
			}
		}
	case opPage:
		want := m.since(time.Time{}, now)
		if r.last != nil { // strictly after the last user returned
			want = slices.DeleteFunc(want, func(a presence.Activity) bool {
				return m.inSlot(a.ID, m.users[a.ID], r.last.id, &modelUser{filed: r.last.filed}) >= 0
			})
		}
		more := len(want) > op.n
		want = want[:min(len(want), op.n)]
		page, next := e.Page(time.Time{}, r.cur, op.n)
		if len(want) == 0 {
			want = nil
		}
		if len(page) == 0 {
			page = nil
		}
		require.Equal(t, want, page, "Page(%d) after %+v", op.n, r.last)
		require.Equal(t, more, !next.IsZero(), "Page(%d): a next page", op.n)
		r.cur, r.last = next, nil
		if more {
			id := page[len(page)-1].ID
			r.last = &pageMark{id, m.users[id].filed}
		}
	case opMerge:
		if r.saved == nil {
			return
		}
		_, err := e.ReadFrom(bytes.NewReader(r.saved))
		require.NoError(t, err)
		m.merge(r.kept, now)
	}
}

func TestAgainstModel(t *testing.T) {
	cases := []struct {
		shards    int
		res       time.Duration
		retention time.Duration
		step      time.Duration // how far the clock moves per operation, at most
		ops       int
		seed      uint64
		maxUsers  int
	}{
		{1, time.Second, 0, 2 * time.Second, 3000, 1, 0},
		{4, time.Second, 0, 30 * time.Second, 3000, 2, 0},
		{8, time.Millisecond, 0, 100 * time.Millisecond, 3000, 3, 0}, // crosses the counters' horizon
		{16, time.Minute, 0, 10 * time.Second, 3000, 4, 0},
		{2, 10 * time.Millisecond, 0, time.Minute, 2000, 5, 0}, // jumps past the whole ring
		{4, time.Second, 20 * time.Minute, 20 * time.Second, 4000, 6, 0},
		{1, time.Millisecond, time.Second, 50 * time.Millisecond, 3000, 7, 0},
		{4, time.Second, 0, 30 * time.Second, 3000, 8, 100}, // full: new users evict
		{64, time.Second, 0, 5 * time.Second, 3000, 9, 0},   // pages read shards in several chunks
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("shards=%d/res=%v/ret=%v/max=%d", tc.shards, tc.res, tc.retention, tc.maxUsers), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(tc.seed, 99))
			run := newModelRun(tc.res, tc.retention, tc.shards, tc.maxUsers)
			for i := range tc.ops {
				op := modelOp{id: fmt.Sprint("u", rng.IntN(500))}
				switch r := rng.IntN(100); {
				case r < 50:
					op.kind = opTouch
				case r < 54: // ahead of the clock
					op.kind, op.d = opTouchAt, time.Duration(rng.Int64N(int64(time.Hour)))
				case r < 75: // in the past, possibly older than the user's time
					op.kind, op.d = opTouchAt, -time.Duration(rng.Int64N(int64(2*time.Hour)))
				case r < 82:
					op.kind, op.meta = opSetMeta, fmt.Sprint("m", rng.IntN(3))
				case r < 88:
					op.kind = opForget
				case r < 89:
					op.kind, op.d = opPrune, time.Duration(rng.Int64N(int64(time.Hour)))
				case r < 90:
					op.kind = []opKind{opRestart, opSave, opMerge}[rng.IntN(3)]
				case r < 93:
					op.kind, op.n = opPage, 1+rng.IntN(10)
				default:
					op.kind, op.d = opAdvance, time.Duration(rng.Int64N(int64(tc.step)*20))
				}
				run.apply(t, op)
				run.clk.Advance(time.Duration(rng.Int64N(int64(tc.step))))
				if i%50 == 0 {
					checkAll(t, run.e, run.m, run.clk.ns.Load(), rng, true)
					require.NoError(t, presence.CheckInvariants(run.e))
				}
			}
			checkAll(t, run.e, run.m, run.clk.ns.Load(), rng, true)
			require.NoError(t, presence.CheckInvariants(run.e))
		})
	}
}

// FuzzAgainstModel runs the operations its input spells against the engine
// and the model. The first byte picks the shards, the resolution, the
// retention and a cap (without retention); then every three bytes are one
// operation (restarts and merges of snapshots among them): its kind, its
// user (of 32) and an amount, in quarters of the resolution (squared for
// clock advances, which reach past the counters' 4,096-slot ring). The
// engine must answer every query exactly as the model does, after every
// operation.
func FuzzAgainstModel(f *testing.F) {
	f.Add([]byte{0x00, 0, 1, 0, 5, 1, 9, 0, 2, 4})
	f.Add([]byte{0x1b, 0, 1, 0, 5, 1, 200, 3, 1, 0, 2, 2, 7, 4, 1, 9, 0, 3, 1})
	f.Add([]byte{0x35, 0, 1, 0, 0, 2, 0, 1, 3, 250, 5, 0, 255, 0, 2, 0, 2, 1, 1, 6, 4, 60, 3, 3, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) == 0 || len(in) > 1+3*100 {
			return
		}
		res := []time.Duration{time.Millisecond, time.Second, time.Minute, time.Hour}[in[0]>>2&3]
		retention := []time.Duration{0, 4 * res, 100 * res, 5000 * res}[in[0]>>4&3]
		maxUsers := 0
		if retention == 0 {
			maxUsers = []int{0, 3, 12, 0}[in[0]>>6]
		}
		run := newModelRun(res, retention, 1<<(in[0]&3), maxUsers)
		rng := rand.New(rand.NewPCG(uint64(len(in)), uint64(in[0])))
		for ops := in[1:]; len(ops) >= 3; ops = ops[3:] {
			arg := time.Duration(ops[2])
			op := modelOp{kind: opKind(ops[0] % uint8(opKinds)), id: fmt.Sprint("u", ops[1]%32), d: arg * res / 4}
			switch op.kind {
			case opTouchAt:
				if ops[0]&0x40 != 0 { // up to 65,025 slots ahead: past the counters' ring
					op.d = arg * arg * res
				}
				if ops[0]&0x80 != 0 {
					op.d = -op.d
				}
			case opSetMeta:
				op.meta = fmt.Sprint("m", ops[2]%3)
			case opAdvance:
				op.d = arg * arg * res / 8
			case opPage:
				op.n = 1 + int(ops[2]%8)
			}
			run.apply(t, op)
			checkAll(t, run.e, run.m, run.clk.ns.Load(), rng, true)
			require.NoError(t, presence.CheckInvariants(run.e))
		}
	})
}

// TestConcurrentAgainstModel runs writers, queriers and removers at once,
// then checks the quiet engine equals the model. Touches commute (the newest
// time wins), so the model is the maximum over every goroutine's log.
func TestConcurrentAgainstModel(t *testing.T) {
	const (
		workers = 8
		shared  = 2000
		perG    = 4000
	)
	clk := newClock()
	e := presence.New(presence.WithClock(clk.Now), presence.WithShards(4), presence.WithResolution(time.Millisecond))

	// Users seen before the cut-off; a pruner removes them while the
	// workers run. Nobody touches them again.
	cut := t0.Add(-time.Hour)
	for i := range 1000 {
		e.TouchAt(fmt.Sprint("stale", i), cut.Add(-time.Duration(i+1)*time.Second))
	}

	logs := make([]*model, workers)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for g := range workers {
		logs[g] = newModel(time.Millisecond, 0)
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 7))
			m := logs[g]
			for i := range perG {
				at := t0.UnixNano() + rng.Int64N(int64(10*time.Minute))
				if rng.IntN(4) == 0 { // this goroutine's own users, which only it forgets
					id := fmt.Sprintf("own%d-%d", g, rng.IntN(200))
					if rng.IntN(3) == 0 {
						e.Forget(id)
						delete(m.users, id)
					} else {
						e.TouchAt(id, time.Unix(0, at))
						m.touch(id, at, at)
					}
					continue
				}
				id := fmt.Sprint("s", rng.IntN(shared))
				e.TouchAt(id, time.Unix(0, at))
				m.touch(id, at, at)
				if i%500 == 0 {
					clk.Advance(time.Second)
				}
			}
		}()
	}
	// Queriers check what must hold at any moment.
	qwg := queriers(2, stop, func(q, _ int) bool {
		if q == 0 {
			// At most every user the run can hold: the shared, the own and the stale.
			n := e.Count(time.Hour)
			assert.LessOrEqual(t, n, shared+workers*200+1000)
			recent := e.Recent(time.Hour, 50)
			assert.LessOrEqual(t, len(recent), 50)
			once := map[string]bool{}
			for _, a := range recent {
				if !assert.False(t, once[a.ID], "Recent returned %s twice", a.ID) {
					return false
				}
				once[a.ID] = true
			}
			return true
		}
		// Forgotten and re-added users are new users.
		return walkedOnce(t, func(c presence.Cursor) ([]presence.Activity, presence.Cursor) { return e.Page(t0, c, 64) },
			func(id string) bool { return strings.HasPrefix(id, "s") })
	})
	pruned := 0
	for range 20 {
		pruned += e.Prune(cut)
	}
	wg.Wait()
	close(stop)
	qwg.Wait()
	pruned += e.Prune(cut)
	assert.Equal(t, 1000, pruned, "every stale user pruned exactly once")

	ref := newModel(time.Millisecond, 0)
	ref.inSlot = func(a string, _ *modelUser, b string, _ *modelUser) int { return presence.CompareHeld(e, a, b) }
	for _, m := range logs {
		for id, u := range m.users {
			ref.touch(id, u.ls, u.ls)
		}
	}
	rng := rand.New(rand.NewPCG(1, 1))
	checkAll(t, e, ref, clk.ns.Load(), rng, false)
	require.NoError(t, presence.CheckInvariants(e))
}

// allPages walks every page, returning what they held (nil if nothing).
func allPages(page func(presence.Cursor) ([]presence.Activity, presence.Cursor)) []presence.Activity {
	var all []presence.Activity
	var cur presence.Cursor
	for {
		items, next := page(cur)
		all = append(all, items...)
		if next.IsZero() {
			return all
		}
		cur = next
	}
}

// queriers runs n goroutines that call check(q, i) for q in [0, n) and
// i = 0, 1, ... until stop is closed or check returns false.
func queriers(n int, stop <-chan struct{}, check func(q, i int) bool) *sync.WaitGroup {
	var wg sync.WaitGroup
	for q := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if !check(q, i) {
					return
				}
			}
		}()
	}
	return &wg
}

// walkedOnce walks every page and reports whether no user that keep
// selects came twice (asserting so on t).
func walkedOnce(t *testing.T, page func(presence.Cursor) ([]presence.Activity, presence.Cursor), keep func(id string) bool) bool {
	seen := map[string]bool{}
	var cur presence.Cursor
	for {
		items, next := page(cur)
		for _, a := range items {
			if !keep(a.ID) {
				continue
			}
			if !assert.False(t, seen[a.ID], "a walk returned %s twice", a.ID) {
				return false
			}
			seen[a.ID] = true
		}
		if next.IsZero() {
			return true
		}
		cur = next
	}
}

// TestMetaNeverOutlivesItsUser races SetMeta against Forget, round after
// round: one goroutine sets a user's meta again and again while another
// forgets the user. Meta set while the user is being forgotten must go with
// it, never stay behind for a user the engine no longer holds.
func TestMetaNeverOutlivesItsUser(t *testing.T) {
	e := presence.New(presence.WithShards(2))
	for round := range 2000 {
		id := fmt.Sprint("u", round%7)
		e.TouchAt(id, t0)
		forgotten := make(chan struct{})
		setter := queriers(1, forgotten, func(_, i int) bool {
			e.SetMeta(id, fmt.Sprint("m", i))
			return true
		})
		runtime.Gosched()
		assert.True(t, e.Forget(id))
		close(forgotten)
		setter.Wait()
		require.NoError(t, presence.CheckInvariants(e), "round %d", round)
	}
}

// TestConcurrentChurnKeepsInvariants runs every kind of write at once on a
// capped engine with retention (inserts that evict, moves, expiry, Forget,
// Prune, SetMeta, snapshots, times far ahead of the clock), then checks the
// map, index and counters agree.
func TestConcurrentChurnKeepsInvariants(t *testing.T) {
	const limit = 2000
	clk := newClock()
	e := presence.New(presence.WithClock(clk.Now), presence.WithShards(4), presence.WithMaxUsers(limit),
		presence.WithRetention(10*time.Minute), presence.WithResolution(time.Millisecond))
	var wg sync.WaitGroup
	for g := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 3))
			for i := range 30_000 {
				id := fmt.Sprint("u", rng.IntN(5000))
				switch r := rng.IntN(100); {
				case r < 70:
					e.Touch(id)
				case r < 79:
					e.TouchAt(id, clk.Now().Add(-time.Duration(rng.IntN(20))*time.Minute))
				case r < 80: // far ahead of the clock: counted apart from the ring
					e.TouchAt(id, clk.Now().Add(time.Duration(1+rng.IntN(48))*time.Hour))
				case r < 85:
					e.SetMeta(id, fmt.Sprint("m", i))
				case r < 92:
					e.Forget(id)
				case r < 93:
					e.Prune(clk.Now().Add(-time.Duration(rng.IntN(15)) * time.Minute))
				case r < 94:
					e.WriteTo(io.Discard)
				default:
					clk.Advance(time.Duration(rng.IntN(50)) * time.Millisecond)
				}
				if i%1000 == 0 {
					require.LessOrEqual(t, e.Stats().Users, limit)
				}
			}
		}()
	}
	wg.Wait()
	require.NoError(t, presence.CheckInvariants(e))
	assert.LessOrEqual(t, e.Len(), limit)
	st := e.Stats()
	t.Logf("inserted %d, moved %d, evicted %d, expired %d, forgotten %d, pruned %d",
		st.Inserted, st.Moved, st.Evicted, st.Expired, st.Forgotten, st.Pruned)
	assert.NotZero(t, st.Evicted)
	assert.NotZero(t, st.Moved)
	assert.NotZero(t, presence.UsersAhead(e), "users counted ahead of the ring")
}
