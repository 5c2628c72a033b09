package presence_test

import (
	"fmt"
	"time"

	"github.com/onlinenow/presence"
)

// A fixed clock keeps the examples' output stable; servers leave WithClock out.
func exampleClock() func() time.Time {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	return func() time.Time { return now }
}

func Example() {
	now := exampleClock()
	e := presence.New(presence.WithClock(now))
	defer e.Close()

	e.TouchAt("alice", now().Add(-20*time.Minute))
	e.TouchAt("bob", now().Add(-3*time.Minute))
	e.Touch("carol") // on every request

	for _, a := range e.Recent(15*time.Minute, 10) {
		fmt.Printf("%s seen %v ago\n", a.ID, now().Sub(a.LastSeen))
	}
	// Output:
	// carol seen 0s ago
	// bob seen 3m0s ago
}

func ExampleEngine_Count() {
	now := exampleClock()
	e := presence.New(presence.WithClock(now))
	for i := range 100 {
		e.TouchAt(fmt.Sprint("user", i), now().Add(-time.Duration(i)*time.Minute))
	}
	fmt.Println("online (5m):", e.Count(5*time.Minute))
	fmt.Println("active (1h):", e.Count(time.Hour))
	fmt.Println("known:", e.Len())
	// Output:
	// online (5m): 6
	// active (1h): 61
	// known: 100
}

func ExampleEngine_Page() {
	now := exampleClock()
	e := presence.New(presence.WithClock(now))
	for i, id := range []string{"a", "b", "c", "d", "e"} {
		e.TouchAt(id, now().Add(time.Duration(i-5)*time.Second))
	}
	var cur presence.Cursor
	for {
		page, next := e.Page(now().Add(-time.Hour), cur, 2)
		fmt.Println(ids(page))
		if next.IsZero() {
			break
		}
		cur = next // next.String() is the opaque form for an HTTP client
	}
	// Output:
	// [e d]
	// [c b]
	// [a]
}

func ExampleWithRetention() {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	e := presence.New(presence.WithClock(func() time.Time { return now }),
		presence.WithRetention(24*time.Hour))
	e.Touch("alice")
	e.SetMeta("alice", "203.0.113.7")
	e.TouchAt("bob", now.Add(-25*time.Hour)) // idle longer than the retention
	fmt.Println("known:", e.Len())

	now = now.Add(24*time.Hour + time.Second) // alice expires too
	fmt.Println("known:", e.Len(), "set meta:", e.SetMeta("alice", "198.51.100.1"))
	e.Touch("alice") // back, as a new user
	a, _ := e.Get("alice")
	fmt.Printf("known: %d, meta: %q\n", e.Len(), a.Meta)
	// Output:
	// known: 1
	// known: 0 set meta: false
	// known: 1, meta: ""
}

func ExampleEngine_TouchIn() {
	now := exampleClock()
	e := presence.New(presence.WithClock(now))

	e.TouchInAt("ticket/42", "alice", now().Add(-time.Minute))
	e.TouchInAt("ticket/42", "bob", now().Add(-10*time.Second))
	e.TouchInAt("ticket/7", "alice", now().Add(-5*time.Second))
	e.TouchIn("ticket/42", "carol") // on every request for the ticket

	room := e.Room("ticket/42")
	for _, a := range room.Recent(2*time.Minute, 10) {
		fmt.Printf("%s viewed it %v ago\n", a.ID, now().Sub(a.LastSeen))
	}
	fmt.Println("viewing (15s):", room.Count(15*time.Second))
	fmt.Println("alice is in", e.RoomsOf("alice"))
	fmt.Println("busiest:", e.Rooms(time.Hour, 1))
	e.Leave("ticket/42", "alice")
	fmt.Println("after alice left:", room.Count(time.Hour))
	// Output:
	// carol viewed it 0s ago
	// bob viewed it 10s ago
	// alice viewed it 1m0s ago
	// viewing (15s): 2
	// alice is in [ticket/7 ticket/42]
	// busiest: [{ticket/42 3}]
	// after alice left: 2
}

func ExampleEngine_Subscribe() {
	e := presence.New()
	defer e.Close()
	sub := e.Subscribe(0)
	e.Touch("alice")
	e.TouchIn("doc", "alice")
	e.TouchIn("doc", "alice") // already online and in the room: no event
	e.Leave("doc", "alice")
	e.Forget("alice")
	for range 4 {
		ev := <-sub.Events()
		if ev.Room == "" {
			fmt.Println(ev.Seq, ev.Kind, ev.ID)
		} else {
			fmt.Println(ev.Seq, ev.Kind, ev.ID, "in", ev.Room)
		}
	}
	// Output:
	// 1 online alice
	// 2 join alice in doc
	// 3 leave alice in doc
	// 4 offline alice
}

func ExampleEngine_Hold() {
	e := presence.New()
	defer e.Close()
	release := e.HoldIn("stream/7", "alice") // while her connection is open
	fmt.Println(e.Online(), e.Room("stream/7").Count(time.Second))
	release()
	release() // idempotent
	// Output: 1 1
}
