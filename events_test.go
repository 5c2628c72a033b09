package presence_test

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/onlinenow/presence"
)

// ev is an event without its time and Seq, to compare.
type ev struct {
	kind     presence.EventKind
	id, room string
}

func (v ev) String() string { return fmt.Sprintf("%v %s %s", v.kind, v.id, v.room) }

// drain returns the events waiting in sub, once every goroutine of the
// bubble is blocked (the sweeper between ticks), checking Seq as it goes.
func drain(t *testing.T, sub *presence.Subscription, last *uint64) []ev {
	t.Helper()
	var out []ev
	for _, e := range drainEvents(t, sub, last) {
		out = append(out, ev{e.Kind, e.ID, e.Room})
	}
	return out
}

// drainEvents is drain's, with the events as they came.
func drainEvents(t *testing.T, sub *presence.Subscription, last *uint64) []presence.Event {
	t.Helper()
	synctest.Wait()
	var out []presence.Event
	for {
		select {
		case e, ok := <-sub.Events():
			if !ok {
				return out
			}
			if e.Kind != presence.Overflow {
				require.Equal(t, *last+1, e.Seq, "Seq rises by one per event: %v", e)
				*last = e.Seq
			}
			out = append(out, e)
		default:
			return out
		}
	}
}

// who is a user (room "") or a member of a room.
type who struct{ room, id string }

// alternate checks that each user's and member's events in got come and
// go in turn, from on, which it updates, with Updates only between. No
// event of got is an Overflow.
func alternate(t *testing.T, got []ev, on map[who]bool, at string) {
	t.Helper()
	for _, g := range got {
		require.NotEqual(t, presence.Overflow, g.kind, at)
		k := who{g.room, g.id}
		if g.kind == presence.Update {
			require.True(t, on[k], "%s: %v: an Update of one online", at, g)
			continue
		}
		up := g.kind == presence.Online || g.kind == presence.Join
		require.NotEqual(t, up, on[k], "%s: %v: events alternate", at, g)
		on[k] = up
	}
}

func TestEventKindString(t *testing.T) {
	for k, want := range map[presence.EventKind]string{
		presence.Online: "online", presence.Offline: "offline", presence.Join: "join",
		presence.Leave: "leave", presence.Overflow: "overflow", 0: "unknown", 99: "unknown",
	} {
		assert.Equal(t, want, k.String())
	}
}

func TestOnlineOffline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := presence.New(presence.WithOnlineWindow(time.Minute))
		defer e.Close()
		e.Touch("early") // online before the subscription: no Online, an Offline in time
		sub := e.Subscribe(0)
		var seq uint64
		e.Touch("alice")
		e.Touch("alice")
		at := time.Now()
		assert.Equal(t, []ev{{presence.Online, "alice", ""}}, drain(t, sub, &seq))
		assert.Equal(t, 2, e.Online())

		time.Sleep(30 * time.Second)
		e.Touch("alice") // seen again within the window: no event
		assert.Empty(t, drain(t, sub, &seq))

		time.Sleep(32 * time.Second) // early's minute is over, alice's not
		assert.Equal(t, []ev{{presence.Offline, "early", ""}}, drain(t, sub, &seq))
		assert.Equal(t, 1, e.Online())
		time.Sleep(30 * time.Second)
		assert.Equal(t, []ev{{presence.Offline, "alice", ""}}, drain(t, sub, &seq))
		assert.Equal(t, 0, e.Online())
		ls, ok := e.LastSeen("alice")
		require.True(t, ok, "offline is not forgotten")
		assert.WithinDuration(t, at.Add(30*time.Second), ls, 0)

		e.Touch("alice")
		assert.Equal(t, []ev{{presence.Online, "alice", ""}}, drain(t, sub, &seq))
		assert.True(t, e.Forget("alice"))
		assert.Equal(t, []ev{{presence.Offline, "alice", ""}}, drain(t, sub, &seq))
		e.Touch("bob")
		e.Prune(time.Now().Add(time.Second))
		assert.Equal(t, []ev{{presence.Online, "bob", ""}, {presence.Offline, "bob", ""}}, drain(t, sub, &seq))
		sub.Close()
		sub.Close()
		_, open := <-sub.Events()
		assert.False(t, open)
	})
}

func TestHold(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := presence.New(presence.WithOnlineWindow(time.Minute), presence.WithHoldGrace(5*time.Second))
		defer e.Close()
		sub := e.Subscribe(0)
		var seq uint64
		tab1 := e.Hold("alice")
		tab2 := e.Hold("alice")
		assert.Equal(t, []ev{{presence.Online, "alice", ""}, {presence.Update, "alice", ""}}, drain(t, sub, &seq),
			"two holds, one Online: the second connection is an Update")

		time.Sleep(10 * time.Minute) // held: seen now all along
		assert.Empty(t, drain(t, sub, &seq))
		assert.Equal(t, 1, e.Online())
		assert.Equal(t, 1, e.Count(time.Second))
		ls, ok := e.LastSeen("alice")
		require.True(t, ok)
		assert.Equal(t, time.Now().UTC(), ls)
		recent := e.Recent(time.Second, 0)
		require.Len(t, recent, 1)
		assert.Equal(t, time.Now().UTC(), recent[0].LastSeen)
		assert.True(t, recent[0].Held)
		e.Touch("alice") // changes nothing while held

		tab1()
		tab1() // idempotent: alice is still held by tab2
		time.Sleep(10 * time.Second)
		assert.Equal(t, []ev{{presence.Update, "alice", ""}}, drain(t, sub, &seq), "one connection fewer")
		assert.Equal(t, 1, e.Online())

		released := time.Now()
		tab2()
		time.Sleep(3 * time.Second) // within the grace
		assert.Equal(t, []ev{{presence.Update, "alice", ""}}, drain(t, sub, &seq), "no connection, online for the grace")
		assert.Equal(t, 1, e.Online())
		time.Sleep(3 * time.Second)
		assert.Equal(t, []ev{{presence.Offline, "alice", ""}}, drain(t, sub, &seq))
		assert.Equal(t, 0, e.Online(), "offline by the grace")
		assert.Equal(t, 1, e.Count(time.Minute), "yet seen within the window, at the release")
		a, _ := e.Get("alice")
		assert.Equal(t, released.UTC(), a.LastSeen)
		assert.False(t, a.Held)

		e.Touch("alice") // back: online again
		assert.Equal(t, []ev{{presence.Online, "alice", ""}}, drain(t, sub, &seq))
		assert.Equal(t, 1, e.Online())
		time.Sleep(2 * time.Minute) // the window passes: one Offline, not a second for the grace
		assert.Equal(t, []ev{{presence.Offline, "alice", ""}}, drain(t, sub, &seq))
		assert.Equal(t, 0, e.Online())

		// A reload: released and held again within the grace, no event.
		rel := e.Hold("bob")
		rel()
		time.Sleep(2 * time.Second)
		rel = e.Hold("bob")
		time.Sleep(10 * time.Second)
		assert.Equal(t, []ev{{presence.Online, "bob", ""}, {presence.Update, "bob", ""}, {presence.Update, "bob", ""}},
			drain(t, sub, &seq), "no Offline and Online: Updates")
		rel()
		e.Forget("bob")
		assert.Equal(t, []ev{{presence.Update, "bob", ""}, {presence.Offline, "bob", ""}}, drain(t, sub, &seq))
		time.Sleep(10 * time.Second)
		assert.Empty(t, drain(t, sub, &seq))

		bad := e.Hold("")
		bad()
		assert.Equal(t, uint64(1), e.Stats().RejectedIDs)
	})
}

func TestRoomEvents(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := presence.New(presence.WithOnlineWindow(time.Minute))
		defer e.Close()
		sub := e.Subscribe(0)
		var seq uint64
		e.TouchIn("doc", "alice")
		e.TouchIn("doc", "alice")
		e.TouchIn("doc", "bob")
		assert.Equal(t, []ev{
			{presence.Online, "alice", ""}, {presence.Join, "alice", "doc"},
			{presence.Online, "bob", ""}, {presence.Join, "bob", "doc"},
		}, drain(t, sub, &seq))

		assert.True(t, e.Leave("doc", "bob"))
		assert.Equal(t, []ev{{presence.Leave, "bob", "doc"}}, drain(t, sub, &seq))

		release := e.HoldIn("live", "carol")
		assert.Equal(t, []ev{{presence.Online, "carol", ""}, {presence.Join, "carol", "live"}}, drain(t, sub, &seq))
		time.Sleep(2 * time.Minute)
		assert.ElementsMatch(t, []ev{
			{presence.Offline, "alice", ""}, {presence.Leave, "alice", "doc"}, {presence.Offline, "bob", ""},
		}, drain(t, sub, &seq))
		assert.Equal(t, 1, e.Room("live").Count(time.Second), "held in the room")
		assert.Equal(t, []presence.RoomCount{{Room: "live", Count: 1}}, e.Rooms(time.Second, 0))
		assert.Equal(t, []string{"live"}, e.RoomsOf("carol"))
		held := e.Room("live").Recent(time.Second, 0)
		require.Len(t, held, 1)
		assert.True(t, held[0].Held, "Held in the room view")

		release()
		time.Sleep(6 * time.Second)
		assert.Equal(t, []ev{
			{presence.Update, "carol", "live"}, {presence.Update, "carol", ""},
			{presence.Leave, "carol", "live"}, {presence.Offline, "carol", ""},
		}, drain(t, sub, &seq))
		left := e.Room("live").Recent(time.Minute, 0)
		require.Len(t, left, 1)
		assert.False(t, left[0].Held)

		e.TouchIn("doc", "dave")
		drain(t, sub, &seq)
		e.Forget("dave")
		assert.ElementsMatch(t, []ev{{presence.Offline, "dave", ""}, {presence.Leave, "dave", "doc"}}, drain(t, sub, &seq))
	})
}

// TestRoomSweepSchedule: the sweep visits a room once its oldest online
// member may have gone; each member leaves on time whether it was seen
// again after the room was scheduled or joined in the past (TouchInAt),
// and a room whose members all left is not
// visited again until one comes back.
func TestRoomSweepSchedule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := presence.New(presence.WithOnlineWindow(time.Minute))
		defer e.Close()
		sub := e.Subscribe(0)
		var seq uint64
		leaves := func() []string {
			var ids []string
			for _, x := range drain(t, sub, &seq) {
				if x.kind == presence.Leave {
					ids = append(ids, x.id)
				}
			}
			return ids
		}
		start := time.Now()
		e.TouchIn("doc", "a") // the room is due at a's slot
		time.Sleep(20 * time.Second)
		e.TouchIn("doc", "b")
		time.Sleep(20 * time.Second)
		e.TouchIn("doc", "a")                              // a moves on: at a's old slot, no one leaves
		e.TouchInAt("doc", "c", start.Add(-5*time.Second)) // older than the slot the room is due at
		release := e.HoldIn("doc", "d")
		time.Sleep(10 * time.Second)
		assert.Empty(t, leaves())
		release()                   // 50s: d leaves after the hold grace
		time.Sleep(6 * time.Second) // 56s: so does c (-5s)
		assert.ElementsMatch(t, []string{"c", "d"}, leaves())

		time.Sleep(25 * time.Second) // 81s: b (20s) is gone
		assert.Equal(t, []string{"b"}, leaves())
		time.Sleep(20 * time.Second) // 101s: a (40s) is gone
		assert.Equal(t, []string{"a"}, leaves())
		time.Sleep(time.Minute)
		assert.Empty(t, leaves())

		e.TouchIn("doc", "b") // back: due again
		assert.Equal(t, 1, e.Room("doc").Count(time.Second))
		time.Sleep(61 * time.Second)
		assert.Equal(t, []string{"b"}, leaves())
	})
}

func TestOverflow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := presence.New()
		defer e.Close()
		slow := e.Subscribe(2)
		fast := e.Subscribe(100)
		for i := range 10 {
			e.Touch(fmt.Sprint("u", i))
		}
		assert.Equal(t, uint64(8), slow.Dropped())
		assert.Zero(t, fast.Dropped())
		var got []presence.Event
		for range 2 {
			got = append(got, <-slow.Events())
		}
		assert.Equal(t, []string{"u0", "u1"}, []string{got[0].ID, got[1].ID})
		e.Touch("u10")
		o := <-slow.Events()
		assert.Equal(t, presence.Overflow, o.Kind)
		assert.Equal(t, uint64(10), o.Seq, "the last event lost")
		assert.Equal(t, "u10", (<-slow.Events()).ID)
		assert.Len(t, fast.Events(), 11)

		require.NoError(t, e.Close())
		_, open := <-slow.Events()
		assert.False(t, open, "Close closes the subscriptions")
		late := e.Subscribe(1)
		_, open = <-late.Events()
		assert.False(t, open, "a subscription after Close is closed")
	})
}

// TestEventsAgainstModel runs random touches, holds, releases, leaves and
// forgets over a few users and rooms, with time moving, against a reference
// model of who is online and in which room. After each step the events
// received so far must leave online exactly the users and members the
// model says are (so each one's events alternate, starting with Online or
// Join), and Online must agree with the model on whole seconds.
func TestEventsAgainstModel(t *testing.T) {
	for seed := range uint64(40) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { eventsModelRun(t, seed) })
		})
	}
}

func eventsModelRun(t *testing.T, seed uint64) {
	const window, grace = 20 * time.Second, 3 * time.Second
	start := time.Now() // a whole second: the sweeper ticks every second from here
	e := presence.New(presence.WithOnlineWindow(window), presence.WithHoldGrace(grace))
	defer e.Close()
	sub := e.Subscribe(1 << 16)
	var seq uint64
	r := rand.New(rand.NewPCG(seed, 1))
	ids := []string{"a", "b", "c", "d"}
	rooms := []string{"", "x", "y"} // "" is global

	type key = who
	type state struct {
		seen     time.Time      // last touch, or release of the last hold
		released time.Time      // when the last hold was released
		holds    map[int]func() // by token
		data     map[int][]byte // each hold's data, by token
	}
	model := map[key]*state{} // the known users and members
	// onlineAt is the engine's rule as the sweeper applies it at tick:
	// held, or seen in the window's first slot or later, and not released
	// a grace or more ago without being seen since.
	onlineAt := func(s *state, tick time.Time) bool {
		if len(s.holds) > 0 {
			return true
		}
		if !s.released.IsZero() && s.seen.Equal(s.released) && !tick.Before(s.released.Add(grace)) {
			return false
		}
		return !s.seen.Truncate(time.Second).Before(tick.Add(-window))
	}
	touch := func(k key, now time.Time) {
		s := model[k]
		if s == nil {
			s = &state{holds: map[int]func(){}, data: map[int][]byte{}}
			model[k] = s
		}
		if len(s.holds) == 0 {
			s.seen = now
		}
	}
	holders := map[int][]key{} // token: the keys it holds
	conns := map[int]presence.Conn{}
	announced := map[key]bool{}
	annData := map[key][][]byte{} // as the events say
	// listed checks the online-now lists against the events and the model.
	listed := func(step int) {
		for _, room := range rooms {
			got := map[string][][]byte{}
			var cur presence.Cursor
			for {
				var page []presence.Activity
				if room == "" {
					page, cur = e.OnlinePage(cur, 2)
				} else {
					page, cur = e.Room(room).OnlinePage(cur, 2)
				}
				for _, a := range page {
					require.NotContains(t, got, a.ID, "step %d: listed once", step)
					got[a.ID] = a.Data
				}
				if cur.IsZero() {
					break
				}
			}
			want := map[string][][]byte{}
			for k, on := range announced {
				if on && k.room == room {
					want[k.id] = annData[k]
					var data [][]byte
					for _, tok := range slices.Sorted(maps.Keys(model[k].holds)) {
						data = append(data, model[k].data[tok])
					}
					require.Equal(t, data, annData[k], "step %d: %v's data as the events say", step, k)
				}
			}
			require.Equal(t, want, got, "step %d: room %q: online now as the events say", step, room)
			if room == "" {
				require.Equal(t, len(want), e.Online(), "step %d", step)
			} else {
				require.Equal(t, len(want), e.Room(room).Online(), "step %d: room %q", step, room)
			}
		}
	}
	check := func(step int) {
		got := drainEvents(t, sub, &seq)
		var evs []ev
		for _, g := range got {
			evs = append(evs, ev{g.Kind, g.ID, g.Room})
			annData[key{g.Room, g.ID}] = g.Data
		}
		alternate(t, evs, announced, fmt.Sprint("step ", step))
		listed(step)
		now := time.Now()
		tick := start.Add(now.Sub(start).Truncate(time.Second))
		online := 0
		for _, k := range slices.Collect(maps.Keys(announced)) {
			s, known := model[k]
			want := known && onlineAt(s, tick)
			require.Equal(t, want, announced[k], "step %d: %v online", step, k)
			if want && k.room == "" {
				online++
			}
		}
		for k, s := range model {
			require.Equal(t, onlineAt(s, tick), announced[k], "step %d: %v online", step, k)
		}
		require.Equal(t, online, e.Online(), "step %d", step)
	}
	token := 0
	for step := range 400 {
		id, room := ids[r.IntN(len(ids))], rooms[r.IntN(len(rooms))]
		now := time.Now()
		switch op := r.IntN(22); {
		case op < 7:
			if room == "" {
				e.Touch(id)
			} else {
				e.TouchIn(room, id)
				touch(key{room, id}, now)
			}
			touch(key{"", id}, now)
		case op < 10:
			token++
			ks := []key{{"", id}}
			if room != "" {
				ks = append(ks, key{room, id})
			}
			var rel func()
			var data []byte
			switch {
			case r.IntN(2) == 0:
				if r.IntN(3) > 0 {
					data = fmt.Appendf(nil, "d%d", step)
				}
				c, err := e.Enter(room, id, data)
				require.NoError(t, err)
				conns[token], rel = c, c.Close
			case room == "":
				rel = e.Hold(id)
			default:
				rel = e.HoldIn(room, id)
			}
			for _, k := range ks {
				touch(k, now)
				model[k].holds[token] = rel
				model[k].data[token] = data
			}
			holders[token] = ks
		case op >= 20:
			if len(conns) == 0 {
				continue
			}
			tok := slices.Sorted(maps.Keys(conns))[r.IntN(len(conns))]
			data := fmt.Appendf(nil, "u%d", step)
			open := false
			for _, k := range holders[tok] {
				if s := model[k]; s != nil && s.holds[tok] != nil {
					s.data[tok] = data
					open = true
				}
			}
			err := conns[tok].Update(data)
			if open {
				require.NoError(t, err, "step %d", step)
			} else {
				require.ErrorIs(t, err, presence.ErrClosed, "step %d", step)
			}
		case op < 13:
			if len(holders) == 0 {
				continue
			}
			tok := slices.Sorted(maps.Keys(holders))[r.IntN(len(holders))]
			for _, k := range holders[tok] {
				s := model[k]
				if s == nil || s.holds[tok] == nil {
					continue // left or forgotten meanwhile
				}
				s.holds[tok]()
				delete(s.holds, tok)
				delete(s.data, tok)
				if len(s.holds) == 0 {
					s.seen, s.released = now, now
				}
			}
			delete(holders, tok)
			delete(conns, tok)
		case op < 14:
			if room == "" {
				continue
			}
			_, member := model[key{room, id}]
			assert.Equal(t, member, e.Leave(room, id), "step %d: Leave", step)
			delete(model, key{room, id})
		case op < 15:
			_, known := model[key{"", id}]
			assert.Equal(t, known, e.Forget(id), "step %d: Forget", step)
			for k := range model {
				if k.id == id {
					delete(model, k)
				}
			}
		case op < 17:
			time.Sleep(time.Duration(1+r.IntN(8)) * time.Second)
		default:
			time.Sleep(time.Duration(r.IntN(8000)) * time.Millisecond)
		}
		check(step)
	}
	for _, ks := range holders {
		for _, k := range ks {
			if s := model[k]; s != nil {
				for _, rel := range s.holds {
					rel()
				}
			}
		}
	}
	time.Sleep(window + 2*time.Second)
	alternate(t, drain(t, sub, &seq), announced, "the end")
	for k, on := range announced {
		assert.False(t, on, "%v online at the end", k)
	}
	assert.Zero(t, e.Online())
}

// TestConcurrentEvents touches, holds and releases from many goroutines
// with a subscriber reading, and checks that each user's events
// alternate, start with Online and that Seq rises by one; once all is
// released and the window has passed, everyone is offline.
func TestConcurrentEvents(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := presence.New(presence.WithOnlineWindow(5*time.Second), presence.WithHoldGrace(time.Second))
		defer e.Close()
		sub := e.Subscribe(1 << 20)
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				r := rand.New(rand.NewPCG(uint64(g), 2))
				for i := range 2000 {
					id := fmt.Sprint("u", r.IntN(50))
					switch r.IntN(4) {
					case 0:
						e.Touch(id)
					case 1:
						e.TouchIn(fmt.Sprint("r", r.IntN(3)), id)
					case 2:
						e.HoldIn(fmt.Sprint("r", r.IntN(3)), id)()
					default:
						rel := e.Hold(id)
						if i%100 == 0 {
							time.Sleep(time.Second)
						}
						rel()
					}
				}
			})
		}
		wg.Wait()
		time.Sleep(10 * time.Second)
		var seq uint64
		got := drain(t, sub, &seq)
		require.Zero(t, sub.Dropped())
		on := map[who]bool{}
		alternate(t, got, on, "")
		for k, up := range on {
			assert.False(t, up, "%v still online", k)
		}
		assert.Zero(t, e.Online())
		assert.Positive(t, len(got))
	})
}

// TestRestoredOnlineGoOffline: after a deploy, the users a snapshot holds
// within the online window are online with no Online event, and go
// Offline (and Leave) on time when they do not come back: no zombies.
func TestRestoredOnlineGoOffline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "presence.snap")
		opts := []presence.OpenOption{presence.WithOnlineWindow(time.Minute), presence.WithHoldGrace(5 * time.Second)}
		before, err := presence.Open(path, opts...)
		require.NoError(t, err)
		before.TouchAt("gone", time.Now().Add(-2*time.Minute)) // offline already
		before.Touch("alice")
		before.TouchIn("doc", "bob")
		release := before.Hold("carol") // held until the deploy: written as seen then
		_ = release
		require.NoError(t, before.Close())

		time.Sleep(20 * time.Second) // the deploy
		after, err := presence.Open(path, opts...)
		require.NoError(t, err)
		defer after.Close()
		sub := after.Subscribe(0)
		var seq uint64
		assert.Empty(t, drain(t, sub, &seq), "restored users are online without an event")
		assert.Equal(t, 3, after.Online())

		after.Touch("alice") // alice comes back
		assert.Empty(t, drain(t, sub, &seq), "still online")
		time.Sleep(41 * time.Second) // bob's and carol's minute is over
		assert.ElementsMatch(t, []ev{
			{presence.Offline, "bob", ""}, {presence.Leave, "bob", "doc"}, {presence.Offline, "carol", ""},
		}, drain(t, sub, &seq))
		assert.Equal(t, 1, after.Online())
		time.Sleep(20 * time.Second)
		assert.Equal(t, []ev{{presence.Offline, "alice", ""}}, drain(t, sub, &seq))
		assert.Zero(t, after.Online())
		assert.Equal(t, 4, after.Len(), "offline users keep their last-seen")
	})
}

// TestCloseRacesStart closes engines while their first subscription and
// hold start the sweeper: no sweeper outlives its engine, and a Subscribe
// after Close returns a closed subscription.
func TestCloseRacesStart(t *testing.T) {
	before := runtime.NumGoroutine()
	for range 500 {
		e := presence.New()
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); e.Subscribe(1) }()
		go func() { defer wg.Done(); e.Hold("alice")() }()
		e.Close()
		wg.Wait()
		_, open := <-e.Subscribe(1).Events()
		require.False(t, open, "a subscription after Close is closed")
	}
	// Sweepers that outlived their engines would tick forever; the
	// goroutines above have all returned.
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	assert.LessOrEqual(t, runtime.NumGoroutine(), before, "a sweeper outlived its engine")
}

// TestHubScopes: no scope is every event; scopes that name nothing (an
// empty contact list) are none; a room named twice, or an event that
// matches a subscription's room and user, arrives once; a closed scoped
// subscription gets nothing more.
func TestHubScopes(t *testing.T) {
	var h presence.Hub
	defer h.Close()
	every := h.Subscribe(8)
	empty := h.Subscribe(8, presence.OfUsers())
	both := h.Subscribe(8, presence.InRooms("r", "r"), presence.OfUsers("u"))
	gone := h.Subscribe(8, presence.InRooms("r"))
	gone.Close()
	assert.Equal(t, 3, h.Subscribers())
	h.Publish(presence.Event{Kind: presence.Join, ID: "u", Room: "r"})
	h.Publish(presence.Event{Kind: presence.Online, ID: "v"})
	assert.Len(t, every.Events(), 2)
	assert.Empty(t, empty.Events(), "an empty contact list receives nothing")
	require.Len(t, both.Events(), 1, "once, though it matches the room twice and the user")
	assert.Equal(t, uint64(1), (<-both.Events()).Seq)
	_, open := <-gone.Events()
	assert.False(t, open)
}
