package presencetest

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/onlinenow/presence"
)

var contractChecks = []check{
	{name: "Rooms", run: checkRooms},
	{name: "Leave", run: checkLeave},
	{name: "RoomCursors", run: checkRoomCursors},
	{name: "Holds", run: checkHolds},
	{name: "Forget", run: checkForget},
	{name: "Events", run: checkEvents},
	{name: "Overflow", run: checkOverflow},
	{name: "ScopedEvents", run: checkScopedEvents},
	{name: "Model", run: checkModel},
	{name: "OnlineNow", run: checkOnlineNow},
	{name: "EnterErrors", run: checkEnterErrors},
}

func rc(room string, n int) presence.RoomCount { return presence.RoomCount{Room: room, Count: n} }

// checkRooms puts users in rooms at several times: Rooms lists the rooms
// with members in the window, busiest first and ties by name, up to the
// limit; RoomsOf lists a user's rooms, most recently active first.
func checkRooms(b *env) error {
	now := b.clk.now()
	at := func(ago int) time.Time { return now.Add(-time.Duration(ago) * time.Second) }
	for _, m := range []struct {
		room, id string
		ago      int
	}{
		{"b", "u1", 1}, {"b", "u2", 2}, {"b", "u3", 3},
		{"a", "u1", 4}, {"a", "u4", 5},
		{"c", "u5", 6}, {"c", "u1", 70},
		{"d", "u6", 3600},
	} {
		b.TouchInAt(m.room, m.id, at(m.ago))
	}
	if err := b.sync(); err != nil {
		return err
	}
	c, cancel := ctx()
	defer cancel()
	for _, tc := range []struct {
		window time.Duration
		limit  int
		want   []presence.RoomCount
	}{
		{time.Minute, 0, []presence.RoomCount{rc("b", 3), rc("a", 2), rc("c", 1)}},
		{2 * time.Minute, 0, []presence.RoomCount{rc("b", 3), rc("a", 2), rc("c", 2)}},
		{2 * time.Minute, 2, []presence.RoomCount{rc("b", 3), rc("a", 2)}},
		{4 * time.Second, -1, []presence.RoomCount{rc("b", 3), rc("a", 1)}},
		{2 * time.Hour, 0, []presence.RoomCount{rc("b", 3), rc("a", 2), rc("c", 2), rc("d", 1)}},
	} {
		got, err := b.Rooms(c, tc.window, tc.limit)
		if err != nil || !slices.Equal(got, tc.want) {
			return fmt.Errorf("Rooms(%v, %d) = %v, %v; want %v", tc.window, tc.limit, got, err, tc.want)
		}
	}
	if got, err := b.RoomsOf(c, "u1"); err != nil || !slices.Equal(got, []string{"b", "a", "c"}) {
		return fmt.Errorf("RoomsOf(u1) = %v, %v; want [b a c], most recently active first", got, err)
	}
	if got, err := b.RoomsOf(c, "nobody"); err != nil || len(got) != 0 {
		return fmt.Errorf("RoomsOf(nobody) = %v, %v; want none", got, err)
	}
	if n, err := b.Room("c").Count(c, 2*time.Minute); err != nil || n != 2 {
		return fmt.Errorf("Room(c).Count(2m) = %d, %v; want 2", n, err)
	}
	if n, err := b.Count(c, 2*time.Minute); err != nil || n != 5 {
		return fmt.Errorf("Count(2m) = %d, %v; want the 5 users in rooms then", n, err)
	}
	return nil
}

// checkLeave ends a membership: the room no longer lists the member, the
// user keeps its global time, and a second Leave reports false.
func checkLeave(b *env) error {
	now := b.clk.now()
	b.TouchInAt("r", "u", now)
	b.TouchInAt("s", "u", now)
	b.TouchInAt("r", "v", now)
	if err := b.sync(); err != nil {
		return err
	}
	c, cancel := ctx()
	defer cancel()
	if ok, err := b.Leave(c, "r", "u"); !ok || err != nil {
		return fmt.Errorf("Leave(r, u) = %v, %v; want true", ok, err)
	}
	if ok, err := b.Leave(c, "r", "u"); ok || err != nil {
		return fmt.Errorf("Leave(r, u) again = %v, %v; want false", ok, err)
	}
	if ok, err := b.Leave(c, "r", "nobody"); ok || err != nil {
		return fmt.Errorf("Leave(r, nobody) = %v, %v; want false", ok, err)
	}
	if _, ok, err := b.Room("r").Get(c, "u"); ok || err != nil {
		return fmt.Errorf("Room(r).Get(u) after Leave = %v, %v; want not a member", ok, err)
	}
	if n, err := b.Room("r").Count(c, time.Minute); n != 1 || err != nil {
		return fmt.Errorf("Room(r).Count after Leave = %d, %v; want 1", n, err)
	}
	if page, _, err := b.Room("r").Page(c, time.Minute, "", 0); err != nil || len(page) != 1 || page[0].ID != "v" {
		return fmt.Errorf("Room(r).Page after Leave = %v, %v; want only v", page, err)
	}
	if got, err := b.RoomsOf(c, "u"); err != nil || !slices.Equal(got, []string{"s"}) {
		return fmt.Errorf("RoomsOf(u) after Leave = %v, %v; want [s]", got, err)
	}
	if a, ok, err := b.Get(c, "u"); !ok || err != nil || !a.LastSeen.Equal(now) {
		return fmt.Errorf("Get(u) after Leave = %v, %v, %v; want its time kept", a, ok, err)
	}
	return nil
}

// checkRoomCursors refuses a cursor of another room's walk, and of the
// users' walk, in a room's Page (and a room's in the users' Page).
func checkRoomCursors(b *env) error {
	now := b.clk.now()
	for i := range 5 {
		id := fmt.Sprint("u", i)
		at := now.Add(-time.Duration(i) * time.Second)
		b.TouchInAt("x", id, at)
		b.TouchInAt("y", id, at)
	}
	if err := b.sync(); err != nil {
		return err
	}
	c, cancel := ctx()
	defer cancel()
	_, inX, err := b.Room("x").Page(c, time.Minute, "", 2)
	if err != nil || inX == "" {
		return fmt.Errorf("Room(x).Page = cursor %q, %v; want a next page", inX, err)
	}
	_, inUsers, err := b.Page(c, time.Minute, "", 2)
	if err != nil || inUsers == "" {
		return fmt.Errorf("Page = cursor %q, %v; want a next page", inUsers, err)
	}
	for _, tc := range []struct {
		name   string
		q      presence.Querier
		cursor string
	}{{"Room(y) with Room(x)'s cursor", b.Room("y"), inX}, {"Room(y) with the users' cursor", b.Room("y"), inUsers},
		{"the users' Page with Room(x)'s cursor", b.Backend, inX}} {
		if _, _, err := tc.q.Page(c, time.Minute, tc.cursor, 2); !errors.Is(err, presence.ErrInvalidCursor) {
			return fmt.Errorf("%s: %v; want an error wrapping ErrInvalidCursor", tc.name, err)
		}
	}
	if page, _, err := b.Room("x").Page(c, time.Minute, inX, 0); err != nil || len(page) != 3 {
		return fmt.Errorf("Room(x).Page with its own cursor = %v, %v; want the other 3", page, err)
	}
	return nil
}

// checkHolds holds users: online and counted once however many holds, in
// the room with Held set, until the last release.
func checkHolds(b *env) error {
	now := b.clk.now()
	r1 := b.Hold("h")
	r2 := b.Hold("h")
	r3 := b.HoldIn("room", "h")
	b.TouchAt("old", now.Add(-time.Hour))
	if err := b.sync(); err != nil {
		return err
	}
	c, cancel := ctx()
	defer cancel()
	if n, err := b.Online(c); n != 1 || err != nil {
		return fmt.Errorf("Online with one user held three times = %d, %v; want 1", n, err)
	}
	if n, err := b.Count(c, time.Minute); n != 1 || err != nil {
		return fmt.Errorf("Count(1m) with one user held = %d, %v; want 1", n, err)
	}
	if page, _, err := b.Room("room").Page(c, time.Minute, "", 0); err != nil || len(page) != 1 || !page[0].Held {
		return fmt.Errorf("Room(room).Page with h held in it = %+v, %v; want h, Held", page, err)
	}
	if page, _, err := b.Page(c, time.Minute, "", 0); err != nil || len(page) != 1 || !page[0].Held {
		return fmt.Errorf("Page with h held = %+v, %v; want h, Held", page, err)
	}
	r1()
	r1() // idempotent: must not release r2's hold
	r3()
	if err := b.sync(); err != nil {
		return err
	}
	if a, ok, err := b.Get(c, "h"); !ok || err != nil || !a.Held {
		return fmt.Errorf("Get(h) with one hold left = %+v, %v, %v; want Held", a, ok, err)
	}
	if a, ok, err := b.Room("room").Get(c, "h"); !ok || err != nil || a.Held {
		return fmt.Errorf("Room(room).Get(h) after its release = %+v, %v, %v; want a member, not Held", a, ok, err)
	}
	r2()
	if err := b.sync(); err != nil {
		return err
	}
	if a, ok, err := b.Get(c, "h"); !ok || err != nil || a.Held {
		return fmt.Errorf("Get(h) after the last release = %+v, %v, %v; want known, not Held", a, ok, err)
	}
	return nil
}

// checkForget removes a user with its memberships and meta.
func checkForget(b *env) error {
	now := b.clk.now()
	b.TouchInAt("r", "f", now)
	b.TouchAt("g", now)
	b.SetMeta("f", "m")
	if err := b.sync(); err != nil {
		return err
	}
	c, cancel := ctx()
	defer cancel()
	if ok, err := b.Forget(c, "f"); !ok || err != nil {
		return fmt.Errorf("Forget(f) = %v, %v; want true", ok, err)
	}
	if ok, err := b.Forget(c, "f"); ok || err != nil {
		return fmt.Errorf("Forget(f) again = %v, %v; want false", ok, err)
	}
	if _, ok, err := b.Get(c, "f"); ok || err != nil {
		return fmt.Errorf("Get(f) after Forget = %v, %v; want unknown", ok, err)
	}
	if _, ok, err := b.Room("r").Get(c, "f"); ok || err != nil {
		return fmt.Errorf("Room(r).Get(f) after Forget = %v, %v; want not a member", ok, err)
	}
	if got, err := b.RoomsOf(c, "f"); err != nil || len(got) != 0 {
		return fmt.Errorf("RoomsOf(f) after Forget = %v, %v; want none", got, err)
	}
	if n, err := b.Count(c, time.Minute); n != 1 || err != nil {
		return fmt.Errorf("Count after Forget = %d, %v; want 1 (g)", n, err)
	}
	b.TouchAt("f", now)
	if err := b.sync(); err != nil {
		return err
	}
	if a, ok, err := b.Get(c, "f"); !ok || err != nil || a.Meta != "" {
		return fmt.Errorf("Get(f) touched after Forget = %+v, %v, %v; want a new user without meta", a, ok, err)
	}
	return nil
}
