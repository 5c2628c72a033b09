package presencetest

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/onlinenow/presence"
)

// eventWait bounds how long a check waits for an event a backend owes: a
// remote backend delivers after a flush and a poll.
const eventWait = 20 * time.Second

// collect reads sub until it delivers an event that until accepts, and
// returns everything read, that event included.
func collect(sub *presence.Subscription, until func(presence.Event) bool) ([]presence.Event, error) {
	var got []presence.Event
	timer := time.NewTimer(eventWait)
	defer timer.Stop()
	for {
		select {
		case ev, ok := <-sub.Events():
			if !ok {
				return got, errors.New("the subscription closed")
			}
			got = append(got, ev)
			if until(ev) {
				return got, nil
			}
		case <-timer.C:
			return got, fmt.Errorf("no awaited event within %v; got %v", eventWait, got)
		}
	}
}

// marker touches a user no check uses, a second after everything before
// it, and returns a test for its Online: once it arrives, every event of
// what was done before it has too.
func (e *env) marker(name string) (func(presence.Event) bool, error) {
	e.clk.advance(time.Second)
	e.Touch(name)
	return func(ev presence.Event) bool { return ev.Kind == presence.Online && ev.ID == name }, e.sync()
}

// checkEvents follows one user through two rooms: each event once, Seq
// rising by one, the user's Online before its Joins, each Join before its
// Leave, every Leave before its Offline, and nothing for a touch that
// changes no one's presence.
func checkEvents(b *env) error {
	c, cancel := ctx()
	defer cancel()
	sub, err := b.Subscribe(c, 0)
	if err != nil {
		return fmt.Errorf("Subscribe: %w", err)
	}
	defer sub.Close()
	b.TouchIn("r", "u")
	b.TouchIn("s", "u")
	if err := b.sync(); err != nil {
		return err
	}
	b.TouchIn("r", "u") // online already: no event
	b.Touch("u")
	if err := b.sync(); err != nil {
		return err
	}
	if ok, err := b.Leave(c, "r", "u"); !ok || err != nil {
		return fmt.Errorf("Leave(r, u) = %v, %v", ok, err)
	}
	if ok, err := b.Forget(c, "u"); !ok || err != nil {
		return fmt.Errorf("Forget(u) = %v, %v", ok, err)
	}
	done, err := b.marker("marker")
	if err != nil {
		return err
	}
	got, err := collect(sub, done)
	if err != nil {
		return err
	}
	type key struct {
		kind presence.EventKind
		room string
	}
	pos := map[key]int{}
	for i, ev := range got {
		if i > 0 && ev.Seq != got[i-1].Seq+1 {
			return fmt.Errorf("event %d has Seq %d after %d: %v", i, ev.Seq, got[i-1].Seq, got)
		}
		if ev.ID != "u" {
			if ev.ID != "marker" {
				return fmt.Errorf("an event of %q, which no one touched: %v", ev.ID, ev)
			}
			continue
		}
		k := key{ev.Kind, ev.Room}
		if _, twice := pos[k]; twice {
			return fmt.Errorf("%v %q sent twice: %v", ev.Kind, ev.Room, got)
		}
		pos[k] = i
	}
	for _, rule := range []struct {
		before, after key
	}{
		{key{presence.Online, ""}, key{presence.Join, "r"}},
		{key{presence.Online, ""}, key{presence.Join, "s"}},
		{key{presence.Join, "r"}, key{presence.Leave, "r"}},
		{key{presence.Join, "s"}, key{presence.Leave, "s"}},
		{key{presence.Leave, "r"}, key{presence.Offline, ""}},
		{key{presence.Leave, "s"}, key{presence.Offline, ""}},
	} {
		i, ok1 := pos[rule.before]
		j, ok2 := pos[rule.after]
		if !ok1 || !ok2 {
			return fmt.Errorf("want %v %q and %v %q, got %v", rule.before.kind, rule.before.room, rule.after.kind, rule.after.room, got)
		}
		if i > j {
			return fmt.Errorf("%v %q came after %v %q: %v", rule.before.kind, rule.before.room, rule.after.kind, rule.after.room, got)
		}
	}
	if len(pos) != 6 {
		return fmt.Errorf("%d distinct events of u, want 6: %v", len(pos), got)
	}
	return nil
}

// checkOverflow lets a subscriber of a two events' buffer fall behind: it
// keeps the first two events, loses the rest (counted by Dropped), and gets
// an Overflow before the next event it has room for.
func checkOverflow(b *env) error {
	c, cancel := ctx()
	defer cancel()
	sub, err := b.Subscribe(c, 2)
	if err != nil {
		return fmt.Errorf("Subscribe: %w", err)
	}
	defer sub.Close()
	for i := range 10 {
		b.Touch(fmt.Sprint("o", i))
	}
	if err := b.sync(); err != nil {
		return err
	}
	deadline := time.Now().Add(eventWait)
	for sub.Dropped() < 8 {
		if time.Now().After(deadline) {
			return fmt.Errorf("Dropped = %d after 10 events into a buffer of 2; want 8", sub.Dropped())
		}
		time.Sleep(10 * time.Millisecond) // events arrive from the backend's reader
	}
	<-sub.Events()
	first := <-sub.Events()
	if first.Kind != presence.Online {
		return fmt.Errorf("second event %v; want the second Online", first)
	}
	done, err := b.marker("after")
	if err != nil {
		return err
	}
	got, err := collect(sub, done)
	if err != nil {
		return err
	}
	if len(got) != 2 || got[0].Kind != presence.Overflow {
		return fmt.Errorf("after the loss: %v; want an Overflow, then the next Online", got)
	}
	if got[0].Seq < first.Seq || got[0].Seq >= got[1].Seq {
		return fmt.Errorf("Overflow's Seq %d: want the last lost, between %d and %d", got[0].Seq, first.Seq, got[1].Seq)
	}
	return nil
}

// checkScopedEvents subscribes to every event and, beside it, scoped to
// rooms, to users, and to both: each scoped subscription receives exactly
// the events of the full stream in its scope (an event of one of its rooms,
// or any event of one of its users), in the same order, each once.
func checkScopedEvents(b *env) error {
	c, cancel := ctx()
	defer cancel()
	scopes := [][]presence.Scope{
		{presence.InRooms("r1", "m")},
		{presence.OfUsers("u2"), presence.InRooms("m")},
		{{Rooms: []string{"r2", "m"}, Users: []string{"u2", "u4"}}},
	}
	all, err := b.Subscribe(c, 0)
	if err != nil {
		return fmt.Errorf("Subscribe: %w", err)
	}
	defer all.Close()
	subs := make([]*presence.Subscription, len(scopes))
	for i, sc := range scopes {
		if subs[i], err = b.Subscribe(c, 0, sc...); err != nil {
			return fmt.Errorf("Subscribe(%v): %w", sc, err)
		}
		defer subs[i].Close()
	}
	b.TouchIn("r1", "u1")
	b.TouchIn("r2", "u2")
	b.TouchIn("r3", "u3")
	b.Touch("u4")
	if err := b.sync(); err != nil {
		return err
	}
	if ok, err := b.Leave(c, "r1", "u1"); !ok || err != nil {
		return fmt.Errorf("Leave(r1, u1) = %v, %v", ok, err)
	}
	if ok, err := b.Forget(c, "u2"); !ok || err != nil {
		return fmt.Errorf("Forget(u2) = %v, %v", ok, err)
	}
	b.clk.advance(time.Second)
	b.TouchIn("m", "mark")
	if err := b.sync(); err != nil {
		return err
	}
	done := func(ev presence.Event) bool { return ev.Kind == presence.Join && ev.Room == "m" }
	full, err := collect(all, done)
	if err != nil {
		return err
	}
	for i, sub := range subs {
		got, err := collect(sub, done)
		if err != nil {
			return fmt.Errorf("scoped to %v: %w", scopes[i], err)
		}
		var want []presence.Event
		for _, ev := range full {
			if inScope(scopes[i], ev) {
				want = append(want, ev)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("scoped to %v:\n got %v\nwant %v", scopes[i], got, want)
		}
	}
	return nil
}

// inScope reports whether ev is in one of scopes.
func inScope(scopes []presence.Scope, ev presence.Event) bool {
	for _, sc := range scopes {
		if (ev.Room != "" && slices.Contains(sc.Rooms, ev.Room)) || slices.Contains(sc.Users, ev.ID) {
			return true
		}
	}
	return false
}
