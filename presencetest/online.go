package presencetest

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/onlinenow/presence"
)

// who is a user (room "") or a member of a room.
type who struct{ room, id string }

// announced is who is online as a subscription's events say, with each
// one's connections' data.
type announced struct {
	on   map[who]bool
	data map[who][][]byte
	log  map[who][]string // each one's events, to explain a failure
}

// apply takes in events, checking that each user's (member's) come and go
// in turn, with Updates only between.
func (a *announced) apply(evs []presence.Event) error {
	for _, ev := range evs {
		k := who{ev.Room, ev.ID}
		if a.log != nil {
			a.log[k] = append(a.log[k], fmt.Sprintf("%v#%d", ev.Kind, ev.Seq))
		}
		switch ev.Kind {
		case presence.Online, presence.Join:
			if a.on[k] {
				return fmt.Errorf("%v of %v, online already", ev.Kind, k)
			}
			a.on[k], a.data[k] = true, ev.Data
		case presence.Update:
			if !a.on[k] {
				return fmt.Errorf("an Update of %v, not online", k)
			}
			a.data[k] = ev.Data
		case presence.Offline, presence.Leave:
			if !a.on[k] {
				return fmt.Errorf("%v of %v, not online", ev.Kind, k)
			}
			delete(a.on, k)
			delete(a.data, k)
		default:
			return fmt.Errorf("unexpected event %v", ev)
		}
	}
	return nil
}

// modelConn is a connection as the model keeps it: the parts (user,
// member) a Leave or a Forget has not ended.
type modelConn struct {
	c    presence.Conn
	live map[who]bool
	data []byte
	open bool
}

// checkOnlineNow drives connections (Enter, Update, Close), touches,
// Leaves and Forgets with a subscriber, and after each batch compares who
// is online now (OnlinePage and Online, globally and in each room, with
// each one's connections' data) with what the events said and with a
// model: a user (member) is listed exactly between its Online (Join) and
// its Offline (Leave), with the data of its open connections in the
// order they opened. The clock stands still, so no one goes offline by
// time until the end, which closes every connection, moves the clock
// past the window and waits for the events and the lists to empty.
func checkOnlineNow(b *env) error {
	rng := rand.New(rand.NewPCG(3, 4))
	c, cancel := ctx()
	defer cancel()
	sub, err := b.Subscribe(c, 1<<14)
	if err != nil {
		return fmt.Errorf("Subscribe: %w", err)
	}
	defer sub.Close()
	rooms := []string{"", "r0", "r1", "r2"}
	online := map[who]bool{} // the model
	var conns []*modelConn
	ann := &announced{on: map[who]bool{}, data: map[who][][]byte{}, log: map[who][]string{}}
	var ops []string // what was done, to explain a failure
	markers := 0
	// settle reads every event of what was done so far: two markers, as a
	// backend reading several streams may deliver the first ahead of
	// events written just before it.
	settle := func() error {
		for range 2 {
			markers++
			name := fmt.Sprint("marker-", markers)
			b.Touch(name)
			online[who{"", name}] = true
			if err := b.sync(); err != nil {
				return err
			}
			evs, err := collect(sub, func(ev presence.Event) bool { return ev.Kind == presence.Online && ev.ID == name })
			if err != nil {
				return err
			}
			if err := ann.apply(evs); err != nil {
				return err
			}
		}
		return nil
	}
	for batch := range 8 {
		for step := range 25 {
			at := fmt.Sprintf("batch %d step %d", batch, step)
			id, room := fmt.Sprint("u", rng.IntN(6)), rooms[rng.IntN(len(rooms))]
			op := rng.IntN(20)
			ops = append(ops, fmt.Sprintf("%d:%d:%s:%s", batch, op, room, id))
			switch {
			case op < 6:
				var data []byte
				if rng.IntN(4) > 0 {
					data = fmt.Appendf(nil, `{"n":%d}`, rng.IntN(1000))
				}
				conn, err := b.Enter(room, id, data)
				if err != nil {
					return fmt.Errorf("%s: Enter(%q, %q): %w", at, room, id, err)
				}
				mc := &modelConn{c: conn, live: map[who]bool{{"", id}: true}, data: data, open: true}
				online[who{"", id}] = true
				if room != "" {
					mc.live[who{room, id}] = true
					online[who{room, id}] = true
				}
				conns = append(conns, mc)
			case op < 9:
				if len(conns) == 0 {
					continue
				}
				mc := conns[rng.IntN(len(conns))]
				data := fmt.Appendf(nil, `{"u":%d}`, rng.IntN(1000))
				err := mc.c.Update(data)
				live := mc.open && slices.Contains(slices.Collect(maps.Values(mc.live)), true)
				if live != (err == nil) || !live && !errors.Is(err, presence.ErrClosed) {
					return fmt.Errorf("%s: Update of a connection open %v, in %v: %v", at, mc.open, mc.live, err)
				}
				if live {
					mc.data = data
				}
			case op < 12:
				if len(conns) == 0 {
					continue
				}
				mc := conns[rng.IntN(len(conns))]
				mc.c.Close()
				mc.open = false
			case op < 16:
				if room == "" {
					b.Touch(id)
				} else {
					b.TouchIn(room, id)
					online[who{room, id}] = true
				}
				online[who{"", id}] = true
			case op < 18:
				if room == "" {
					continue
				}
				if err := b.sync(); err != nil {
					return err
				}
				ok, err := b.Leave(c, room, id)
				if k := (who{room, id}); ok != online[k] || err != nil {
					return fmt.Errorf("%s: Leave(%s, %s) = %v, %v; want %v", at, room, id, ok, err, online[k])
				}
				delete(online, who{room, id})
				for _, mc := range conns {
					delete(mc.live, who{room, id})
				}
			default:
				if err := b.sync(); err != nil {
					return err
				}
				ok, err := b.Forget(c, id)
				if ok != online[who{"", id}] || err != nil {
					return fmt.Errorf("%s: Forget(%s) = %v, %v; want %v", at, id, ok, err, online[who{"", id}])
				}
				for k := range online {
					if k.id == id {
						delete(online, k)
					}
				}
				for _, mc := range conns {
					for k := range mc.live {
						if k.id == id {
							delete(mc.live, k)
						}
					}
				}
			}
		}
		if err := settle(); err != nil {
			return fmt.Errorf("batch %d: %w", batch, err)
		}
		want := map[who][][]byte{}
		for k := range online {
			var data [][]byte
			for _, mc := range conns {
				if mc.open && mc.live[k] {
					data = append(data, mc.data)
				}
			}
			want[k] = data
		}
		// A backend reading several streams (Redis Cluster: one per node)
		// may deliver an event written before the markers after them: read
		// on until the events describe the model, for as long as an event
		// is owed.
		caughtUp := func() bool {
			if !maps.Equal(ann.on, online) {
				return false
			}
			for k, data := range want {
				if fmt.Sprintf("%q", ann.data[k]) != fmt.Sprintf("%q", data) {
					return false
				}
			}
			return true
		}
		for deadline := time.Now().Add(eventWait); !caughtUp() && time.Now().Before(deadline); {
			select {
			case ev := <-sub.Events():
				if err := ann.apply([]presence.Event{ev}); err != nil {
					return fmt.Errorf("batch %d: %w", batch, err)
				}
			case <-time.After(10 * time.Millisecond):
			}
		}
		if !maps.Equal(ann.on, online) {
			var diff []string
			for k := range online {
				if !ann.on[k] {
					diff = append(diff, fmt.Sprintf("%v online, not as the events say: %v", k, ann.log[k]))
				}
			}
			for k := range ann.on {
				if !online[k] {
					diff = append(diff, fmt.Sprintf("%v online as the events say, not by the model: %v", k, ann.log[k]))
				}
			}
			return fmt.Errorf("batch %d: %v; after %v", batch, diff, ops)
		}
		for k, data := range want {
			if fmt.Sprintf("%q", ann.data[k]) != fmt.Sprintf("%q", data) {
				return fmt.Errorf("batch %d: %v's data as the events say: %q; want %q", batch, k, ann.data[k], data)
			}
		}
		if err := b.compareOnline(rooms, want); err != nil {
			return fmt.Errorf("batch %d: %w", batch, err)
		}
	}
	for _, mc := range conns {
		mc.c.Close()
	}
	if err := b.sync(); err != nil {
		return err
	}
	b.clk.advance(24 * time.Hour)
	deadline := time.Now().Add(eventWait)
	for len(ann.on) > 0 {
		if b.Sweep != nil {
			if err := b.Sweep(c); err != nil {
				return fmt.Errorf("Sweep: %w", err)
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("a day later, still online as the events say: %v", slices.Collect(maps.Keys(ann.on)))
		}
		select {
		case ev := <-sub.Events():
			if err := ann.apply([]presence.Event{ev}); err != nil {
				return err
			}
		case <-time.After(100 * time.Millisecond):
		}
	}
	return b.compareOnline(rooms, map[who][][]byte{})
}

// compareOnline checks OnlinePage (walked two at a time) and Online
// against want, globally and in each of rooms.
func (b *env) compareOnline(rooms []string, want map[who][][]byte) error {
	c, cancel := ctx()
	defer cancel()
	for _, room := range rooms {
		q := presence.Querier(b.Backend)
		if room != "" {
			q = b.Room(room)
		}
		got := map[string]string{}
		cur := ""
		for {
			page, next, err := q.OnlinePage(c, cur, 2)
			if err != nil {
				return fmt.Errorf("room %q: OnlinePage: %w", room, err)
			}
			for _, a := range page {
				if _, twice := got[a.ID]; twice {
					return fmt.Errorf("room %q: OnlinePage lists %s twice", room, a.ID)
				}
				got[a.ID] = fmt.Sprintf("%q", a.Data)
			}
			if cur = next; cur == "" {
				break
			}
		}
		exp := map[string]string{}
		for k, data := range want {
			if k.room == room {
				exp[k.id] = fmt.Sprintf("%q", data)
			}
		}
		if !maps.Equal(got, exp) {
			return fmt.Errorf("room %q: OnlinePage lists %v; want %v", room, got, exp)
		}
		if n, err := q.Online(c); n != len(exp) || err != nil {
			return fmt.Errorf("room %q: Online = %d, %v; want %d", room, n, err, len(exp))
		}
	}
	return nil
}

// checkEnterErrors: Enter refuses a bad ID, a bad room name and data over
// MaxDataLen with their errors, counted in no user; Update refuses data
// over the limit and changes nothing, and after Close returns ErrClosed.
func checkEnterErrors(b *env) error {
	big := make([]byte, presence.MaxDataLen+1)
	for _, tc := range []struct {
		room, id string
		data     []byte
		want     error
	}{
		{"", "", nil, presence.ErrInvalidID},
		{"r", string(make([]byte, presence.MaxIDLen+1)), nil, presence.ErrInvalidID},
		{"bad\x00room", "u", nil, presence.ErrInvalidRoom},
		{"r", "u", big, presence.ErrDataTooLarge},
	} {
		if c, err := b.Enter(tc.room, tc.id, tc.data); c != nil || !errors.Is(err, tc.want) {
			return fmt.Errorf("Enter(%q, %.8q…, %d bytes) = %v, %v; want %v", tc.room, tc.id, len(tc.data), c, err, tc.want)
		}
	}
	c, cancel := ctx()
	defer cancel()
	if n, err := b.Online(c); n != 0 || err != nil {
		return fmt.Errorf("Online after refused Enters = %d, %v; want 0", n, err)
	}
	conn, err := b.Enter("r", "u", []byte("1"))
	if err != nil {
		return fmt.Errorf("Enter: %w", err)
	}
	if err := conn.Update(big); !errors.Is(err, presence.ErrDataTooLarge) {
		return fmt.Errorf("Update with %d bytes = %v; want ErrDataTooLarge", len(big), err)
	}
	if err := b.sync(); err != nil {
		return err
	}
	if a, ok, err := b.Room("r").Get(c, "u"); !ok || err != nil || fmt.Sprintf("%q", a.Data) != `["1"]` {
		return fmt.Errorf("Room(r).Get(u) after a refused Update = %+v, %v, %v; want its data [1]", a, ok, err)
	}
	conn.Close()
	conn.Close() // idempotent
	if err := conn.Update([]byte("2")); !errors.Is(err, presence.ErrClosed) {
		return fmt.Errorf("Update after Close = %v; want ErrClosed", err)
	}
	return nil
}
