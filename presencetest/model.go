package presencetest

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/onlinenow/presence"
)

// model is the reference a backend's answers are compared with: each
// user's last-seen time and each membership's time in its room, changed
// only by touches, Leave and Forget.
type model struct {
	users map[string]time.Time
	rooms map[string]map[string]time.Time // room -> member -> time in the room
}

func (m *model) touch(room, id string, at time.Time) {
	if at.After(m.users[id]) {
		m.users[id] = at
	}
	if room == "" {
		return
	}
	if m.rooms[room] == nil {
		m.rooms[room] = map[string]time.Time{}
	}
	if at.After(m.rooms[room][id]) {
		m.rooms[room][id] = at
	}
}

func (m *model) leave(room, id string) bool {
	_, ok := m.rooms[room][id]
	delete(m.rooms[room], id)
	return ok
}

func (m *model) forget(id string) bool {
	_, ok := m.users[id]
	delete(m.users, id)
	for _, members := range m.rooms {
		delete(members, id)
	}
	return ok
}

func count(set map[string]time.Time, since time.Time) int {
	n := 0
	for _, at := range set {
		if !at.Before(since) {
			n++
		}
	}
	return n
}

// checkModel drives the backend with a random sequence of touches (in
// rooms and not), Leaves, Forgets and clock moves, and compares every
// query with the model after each batch.
func checkModel(b *env) error {
	rng := rand.New(rand.NewPCG(1, 2))
	m := &model{users: map[string]time.Time{}, rooms: map[string]map[string]time.Time{}}
	c, cancel := ctx()
	defer cancel()
	for batch := range 12 {
		for range 30 {
			id := fmt.Sprint("u", rng.IntN(16))
			room := fmt.Sprint("r", rng.IntN(4))
			switch op := rng.IntN(20); {
			case op < 7:
				b.Touch(id)
				m.touch("", id, b.clk.now())
			case op < 14:
				b.TouchIn(room, id)
				m.touch(room, id, b.clk.now())
			case op < 16:
				if err := b.sync(); err != nil {
					return err
				}
				ok, err := b.Leave(c, room, id)
				if want := m.leave(room, id); ok != want || err != nil {
					return fmt.Errorf("batch %d: Leave(%s, %s) = %v, %v; want %v", batch, room, id, ok, err, want)
				}
			case op < 17:
				if err := b.sync(); err != nil {
					return err
				}
				ok, err := b.Forget(c, id)
				if want := m.forget(id); ok != want || err != nil {
					return fmt.Errorf("batch %d: Forget(%s) = %v, %v; want %v", batch, id, ok, err, want)
				}
			default:
				b.clk.advance(time.Duration(rng.IntN(40)) * time.Second)
			}
		}
		if err := b.sync(); err != nil {
			return err
		}
		if err := m.compare(b); err != nil {
			return fmt.Errorf("batch %d: %w", batch, err)
		}
	}
	return nil
}

// compare checks the backend's answers against the model's.
func (m *model) compare(b *env) error {
	c, cancel := ctx()
	defer cancel()
	now := b.clk.now()
	windows := []time.Duration{30 * time.Second, 2 * time.Minute, 10 * time.Minute, forever}
	for _, w := range windows {
		since := now.Add(-w)
		if w == forever {
			since = time.Time{}
		}
		if n, err := b.Count(c, w); err != nil || n != count(m.users, since) {
			return fmt.Errorf("Count(%v) = %d, %v; want %d", w, n, err, count(m.users, since))
		}
		page, _, err := b.Page(c, w, "", 0)
		if err != nil {
			return err
		}
		want := map[string]time.Time{}
		for id, at := range m.users {
			if !at.Before(since) {
				want[id] = at
			}
		}
		if err := sameUsers(page, want); err != nil {
			return fmt.Errorf("Page(%v): %w", w, err)
		}
		var rooms []presence.RoomCount
		for name, members := range m.rooms {
			if n := count(members, since); n > 0 {
				rooms = append(rooms, presence.RoomCount{Room: name, Count: n})
			}
		}
		slices.SortFunc(rooms, func(a, b presence.RoomCount) int {
			return cmp.Or(cmp.Compare(b.Count, a.Count), strings.Compare(a.Room, b.Room))
		})
		if got, err := b.Rooms(c, w, 0); err != nil || !slices.Equal(got, rooms) {
			return fmt.Errorf("Rooms(%v) = %v, %v; want %v", w, got, err, rooms)
		}
		for name, members := range m.rooms {
			want := map[string]time.Time{}
			for id, at := range members {
				if !at.Before(since) {
					want[id] = at
				}
			}
			page, _, err := b.Room(name).Page(c, w, "", 0)
			if err != nil {
				return err
			}
			if err := sameUsers(page, want); err != nil {
				return fmt.Errorf("Room(%s).Page(%v): %w", name, w, err)
			}
		}
	}
	for id, at := range m.users {
		if a, ok, err := b.Get(c, id); !ok || err != nil || !a.LastSeen.Equal(at) {
			return fmt.Errorf("Get(%s) = %v, %v, %v; want last seen %v", id, a.LastSeen, ok, err, at)
		}
		type in struct {
			room string
			at   time.Time
		}
		var ins []in
		for name, members := range m.rooms {
			if at, ok := members[id]; ok {
				ins = append(ins, in{name, at})
			}
		}
		slices.SortFunc(ins, func(a, b in) int { return cmp.Or(b.at.Compare(a.at), strings.Compare(a.room, b.room)) })
		var want []string
		for _, r := range ins {
			want = append(want, r.room)
		}
		if got, err := b.RoomsOf(c, id); err != nil || !slices.Equal(got, want) {
			return fmt.Errorf("RoomsOf(%s) = %v, %v; want %v", id, got, err, want)
		}
	}
	return nil
}
