// Package presencetest checks that a presence backend keeps the query
// contract of [presencehttp.Querier], as testing/fstest checks an fs.FS:
// counts at window edges, newest-first order, limits, exactly-once paging
// across thousands of tied times and under concurrent touches, bad cursors,
// unknown IDs, and the max-merge of last-seen times.
//
// Every backend of this module runs it: the in-memory engine (through
// [presencehttp.FromEngine]) and the Redis store. A new backend runs it from
// a test:
//
//	func TestContract(t *testing.T) {
//		presencetest.Test(t, func(t *testing.T) presencetest.Backend {
//			s := newStore(t) // empty, private to this check
//			return presencetest.Backend{Querier: s, Recorder: s, Sync: s.Flush}
//		})
//	}
//
// The checks touch users at times within the last hour, on whole seconds
// for window edges and on whole milliseconds otherwise, so a backend has to
// be exact to the millisecond for last-seen times and to the second for
// windows: a window starting on a whole second holds exactly the users seen
// at it or later.
package presencetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/onlinenow/presence"
	"github.com/onlinenow/presence/middleware"
	"github.com/onlinenow/presence/presencehttp"
)

// Backend is one backend under test, empty when a check gets it.
type Backend struct {
	Querier  presencehttp.Querier
	Recorder middleware.Recorder // a middleware.MetaRecorder is checked for meta too
	// Sync makes every touch recorded so far visible to Querier (a buffered
	// backend flushes); nil if touches are visible at once. Checks call it
	// from one goroutine while others query.
	Sync func(context.Context) error
}

// Test runs every check as a subtest of t, each on a new Backend from open.
func Test(t *testing.T, open func(t *testing.T) Backend) {
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			if err := c.run(open(t)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// Check runs every check, each on a new Backend from open, and returns
// their failures joined ("check: what went wrong"), or nil if all pass.
func Check(open func() (Backend, error)) error {
	var errs []error
	for _, c := range checks {
		b, err := open()
		if err == nil {
			err = c.run(b)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.name, err))
		}
	}
	return errors.Join(errs...)
}

var checks = []struct {
	name string
	run  func(Backend) error
}{
	{"Empty", checkEmpty},
	{"CountsAtWindowEdges", checkCounts},
	{"NewestFirst", checkOrder},
	{"Limits", checkLimits},
	{"PagingTies", checkTies},
	{"PagingUnderTouches", checkPagingUnderTouches},
	{"BadCursors", checkBadCursors},
	{"UnknownAndInvalidIDs", checkUnknownIDs},
	{"MaxMerge", checkMaxMerge},
	{"Meta", checkMeta},
}

// timeout bounds each check's calls, so that a hung backend fails.
const timeout = time.Minute

func ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), timeout)
}

// base is where a check's times start: a whole second an hour ago.
func base() time.Time { return time.Now().Add(-time.Hour).Truncate(time.Second) }

func (b Backend) sync() error {
	if b.Sync == nil {
		return nil
	}
	c, cancel := ctx()
	defer cancel()
	return b.Sync(c)
}

// touchAll records every user at its time and syncs.
func (b Backend) touchAll(users map[string]time.Time) error {
	for id, at := range users {
		b.Recorder.TouchAt(id, at)
	}
	return b.sync()
}

func (b Backend) count(t time.Time) (int, error) {
	c, cancel := ctx()
	defer cancel()
	return b.Querier.CountSince(c, t)
}

func (b Backend) page(t time.Time, cursor string, limit int) ([]presence.Activity, string, error) {
	c, cancel := ctx()
	defer cancel()
	return b.Querier.Page(c, t, cursor, limit)
}

// walk pages through everyone seen since t, limit at a time, calling
// between (if not nil) before each page after the first. It fails on a
// user returned twice, on a page longer than limit, and on a walk that does
// not end within as many pages as there could be.
func (b Backend) walk(t time.Time, limit, most int, between func()) ([]presence.Activity, error) {
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
		page, next, err := b.page(t, cursor, limit)
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
