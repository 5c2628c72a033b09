// Package presencetest checks that a backend keeps the contract of
// [presence.Backend], as testing/fstest checks an fs.FS.
//
// The query checks run on the users and again on one room's members:
// counts at window edges, newest-first order, limits, exactly-once paging
// across thousands of tied times and under concurrent touches, bad cursors,
// unknown IDs, the max-merge of last-seen times and meta. The contract
// checks cover the rest: rooms (counts, busiest first, a user's rooms,
// Leave, another room's cursor), holds (counted once, Held in pages),
// Forget, and events (each kind, a user's Online before its Join and its
// Leave before its Offline, none twice, Overflow for a subscriber that
// falls behind), and a randomized sequence of operations compared with a
// reference model.
//
// Every backend of this module runs it: the in-memory engine (through
// [presence.Engine.Backend]) and the Redis store. A new backend runs it
// from a test:
//
//	func TestContract(t *testing.T) {
//		presencetest.Test(t, func(t *testing.T, now func() time.Time) presencetest.Backend {
//			s := newStore(t, WithClock(now)) // empty, private to this check
//			return presencetest.Backend{Backend: s, Sync: s.Flush, Sweep: s.Sweep}
//		})
//	}
//
// Each check owns the backend's clock: open must make the backend read
// time from now, which stands still unless the check moves it. The checks
// touch users at times within the hour before it, on whole seconds for
// window edges and on whole milliseconds otherwise, so a backend has to be
// exact to the millisecond for last-seen times and to the second for
// windows.
package presencetest

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/onlinenow/presence"
)

// Backend is one backend under test, empty when a check gets it.
type Backend struct {
	presence.Backend
	// Sync makes every touch recorded so far visible to queries and
	// events (a buffered backend flushes); nil if touches are visible at
	// once. Checks call it from one goroutine while others query.
	Sync func(context.Context) error
	// Sweep makes the backend find the users who went offline by now, as
	// its sweeper does on its own timer; nil if that timer runs often
	// enough (a second or so) for a check to wait for it.
	Sweep func(context.Context) error
}

// Test runs every check as a subtest of t, each on a new Backend from open,
// which must read its time from now.
func Test(t *testing.T, open func(t *testing.T, now func() time.Time) Backend) {
	for _, c := range all() {
		t.Run(c.name, func(t *testing.T) {
			clk := newClock()
			b := open(t, clk.now)
			if err := c.run(newEnv(b, clk, c.room)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// Check runs every check, each on a new Backend from open, and returns
// their failures joined ("check: what went wrong"), or nil if all pass. It
// closes each backend after its check.
func Check(open func(now func() time.Time) (Backend, error)) error {
	var errs []error
	for _, c := range all() {
		clk := newClock()
		b, err := open(clk.now)
		if err == nil {
			err = c.run(newEnv(b, clk, c.room))
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			b.Close(ctx)
			cancel()
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.name, err))
		}
	}
	return errors.Join(errs...)
}

type check struct {
	name string
	room bool // run in a room: queries of b.Room, touches with TouchInAt
	run  func(*env) error
}

// all lists every check: the query checks on the users, then on a room,
// then the checks of the rest of the contract.
func all() []check {
	var out []check
	for _, room := range []bool{false, true} {
		for _, c := range queryChecks {
			if room {
				c.name = "Room/" + c.name
			}
			c.room = room
			out = append(out, c)
		}
	}
	return append(out, contractChecks...)
}

// timeout bounds each check's calls, so that a hung backend fails.
const timeout = time.Minute

// forever is a window that holds every user a check touched.
const forever = 100 * 365 * 24 * time.Hour

func ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), timeout)
}

// clock is a check's time: it stands still unless the check moves it.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Now().Truncate(time.Second).UnixNano())
	return c
}

func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// env is what a check works on: the backend, its clock, and what its
// queries read and its touches write (the users, or one room's members).
type env struct {
	Backend
	clk   *clock
	room  string // "" for the users
	q     presence.Querier
	start time.Time // the check's times start here: a whole second an hour before now
}

func newEnv(b Backend, clk *clock, inRoom bool) *env {
	e := &env{Backend: b, clk: clk, q: b.Backend, start: clk.now().Add(-time.Hour)}
	if inRoom {
		e.room = "r"
		e.q = b.Room(e.room)
		// Noise the room must not see: a member of another room and a
		// user in no room.
		b.TouchInAt("other", "noise-a", e.start.Add(30*time.Second))
		b.TouchAt("noise-b", e.start.Add(30*time.Second))
	}
	return e
}

func (e *env) sync() error {
	if e.Sync == nil {
		return nil
	}
	c, cancel := ctx()
	defer cancel()
	return e.Sync(c)
}

// touchAt records id at at, in the env's room if it has one.
func (e *env) touchAt(id string, at time.Time) {
	if e.room != "" {
		e.TouchInAt(e.room, id, at)
		return
	}
	e.TouchAt(id, at)
}

// touchAll records every user at its time and syncs.
func (e *env) touchAll(users map[string]time.Time) error {
	for id, at := range users {
		e.touchAt(id, at)
	}
	return e.sync()
}

// window is the window that starts at t, by the env's clock.
func (e *env) window(t time.Time) time.Duration {
	if t.IsZero() {
		return forever
	}
	return e.clk.now().Sub(t)
}

func (e *env) count(t time.Time) (int, error) {
	c, cancel := ctx()
	defer cancel()
	return e.q.Count(c, e.window(t))
}

func (e *env) page(t time.Time, cursor string, limit int) ([]presence.Activity, string, error) {
	c, cancel := ctx()
	defer cancel()
	return e.q.Page(c, e.window(t), cursor, limit)
}

func (e *env) get(id string) (presence.Activity, bool, error) {
	c, cancel := ctx()
	defer cancel()
	return e.q.Get(c, id)
}

// walk pages through everyone seen since t, limit at a time, calling
// between (if not nil) before each page after the first. It fails on a
// user returned twice, on a page longer than limit, and on a walk that does
// not end within as many pages as there could be.
func (e *env) walk(t time.Time, limit, most int, between func()) ([]presence.Activity, error) {
	var all []presence.Activity
	seen := map[string]bool{}
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > most/limit+2 {
			return nil, fmt.Errorf("no last page after %d pages of %d for at most %d users", pages, limit, most)
		}
		if pages > 0 && between != nil {
			between()
		}
		page, next, err := e.page(t, cursor, limit)
		if err != nil {
			return nil, err
		}
		if len(page) > limit {
			return nil, fmt.Errorf("a page of %d users for limit %d", len(page), limit)
		}
		for _, a := range page {
			if seen[a.ID] {
				return nil, fmt.Errorf("user %q returned twice (page %d, limit %d)", a.ID, pages, limit)
			}
			seen[a.ID] = true
		}
		all = append(all, page...)
		if next == "" {
			return all, nil
		}
		cursor = next
	}
}

func sameUsers(got []presence.Activity, want map[string]time.Time) error {
	if len(got) != len(want) {
		return fmt.Errorf("%d users, want %d", len(got), len(want))
	}
	for _, a := range got {
		at, ok := want[a.ID]
		if !ok {
			return fmt.Errorf("user %q was never touched", a.ID)
		}
		if !a.LastSeen.Equal(at) {
			return fmt.Errorf("user %q last seen %v, want %v", a.ID, a.LastSeen, at)
		}
	}
	return nil
}
