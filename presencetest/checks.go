package presencetest

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/onlinenow/presence"
)

var queryChecks = []check{
	{name: "Empty", run: checkEmpty},
	{name: "CountsAtWindowEdges", run: checkCounts},
	{name: "NewestFirst", run: checkOrder},
	{name: "Limits", run: checkLimits},
	{name: "PagingTies", run: checkTies},
	{name: "PagingUnderTouches", run: checkPagingUnderTouches},
	{name: "BadCursors", run: checkBadCursors},
	{name: "UnknownAndInvalidIDs", run: checkUnknownIDs},
	{name: "MaxMerge", run: checkMaxMerge},
	{name: "Meta", run: checkMeta},
}

func checkEmpty(b *env) error {
	t := b.start
	if n, err := b.count(time.Time{}); err != nil || n != 0 {
		return fmt.Errorf("Count(all) = %d, %v; want 0", n, err)
	}
	page, next, err := b.page(t, "", 10)
	if err != nil || len(page) != 0 || next != "" {
		return fmt.Errorf("Page = %d users, cursor %q, %v; want none", len(page), next, err)
	}
	return nil
}

// checkCounts touches 60 users a second apart, each at some point within
// its second, and counts from every whole second of the range and beyond.
func checkCounts(b *env) error {
	t := b.start
	users := map[string]time.Time{}
	for i := range 60 {
		users[fmt.Sprint("c", i)] = t.Add(time.Duration(i)*time.Second + time.Duration(i%3)*499*time.Millisecond)
	}
	if err := b.touchAll(users); err != nil {
		return err
	}
	for edge := -1; edge <= 61; edge++ {
		from := t.Add(time.Duration(edge) * time.Second)
		want := 0
		for _, at := range users {
			if !at.Before(from) {
				want++
			}
		}
		if n, err := b.count(from); err != nil || n != want {
			return fmt.Errorf("Count(from base%+ds) = %d, %v; want %d", edge, n, err, want)
		}
	}
	if n, err := b.count(time.Time{}); err != nil || n != len(users) {
		return fmt.Errorf("Count(all) = %d, %v; want all %d", n, err, len(users))
	}
	return nil
}

// checkOrder pages through users at distinct times: newest first, to the
// second at least, with exact last-seen times.
func checkOrder(b *env) error {
	t := b.start
	users := map[string]time.Time{}
	for i := range 200 {
		users[fmt.Sprint("o", i)] = t.Add(time.Duration((i*7919)%200)*time.Second + time.Duration(i%5)*time.Millisecond)
	}
	if err := b.touchAll(users); err != nil {
		return err
	}
	for _, limit := range []int{1000, 9} {
		all, err := b.walk(t, limit, len(users), nil)
		if err != nil {
			return err
		}
		if err := sameUsers(all, users); err != nil {
			return err
		}
		for i := 1; i < len(all); i++ {
			if all[i].LastSeen.Truncate(time.Second).After(all[i-1].LastSeen.Truncate(time.Second)) {
				return fmt.Errorf("limit %d: %q (%v) after %q (%v): not newest first",
					limit, all[i].ID, all[i].LastSeen, all[i-1].ID, all[i-1].LastSeen)
			}
		}
	}
	return nil
}

// checkLimits pages through 25 users: limit <= 0 means all, a page ends
// the walk with "" exactly when nothing follows, and the window bounds it.
func checkLimits(b *env) error {
	t := b.start
	users := map[string]time.Time{}
	for i := range 25 {
		users[fmt.Sprint("l", i)] = t.Add(time.Duration(i) * time.Second)
	}
	if err := b.touchAll(users); err != nil {
		return err
	}
	for _, limit := range []int{0, -1} {
		page, next, err := b.page(t, "", limit)
		if err != nil || next != "" {
			return fmt.Errorf("Page(limit %d): cursor %q, %v; want all and no cursor", limit, next, err)
		}
		if err := sameUsers(page, users); err != nil {
			return fmt.Errorf("Page(limit %d): %w", limit, err)
		}
	}
	for _, tc := range []struct{ limit, pages, last int }{{10, 3, 5}, {25, 1, 25}, {24, 2, 1}, {100, 1, 25}} {
		cursor := ""
		for p := 1; ; p++ {
			page, next, err := b.page(t, cursor, tc.limit)
			if err != nil {
				return err
			}
			want := tc.limit
			if p == tc.pages {
				want = tc.last
			}
			if len(page) != want || (next == "") != (p == tc.pages) {
				return fmt.Errorf("limit %d, page %d: %d users, next %q; want %d users and a cursor only before page %d",
					tc.limit, p, len(page), next, want, tc.pages)
			}
			if next == "" {
				break
			}
			cursor = next
		}
	}
	page, _, err := b.page(t.Add(20*time.Second), "", 0)
	if err != nil || len(page) != 5 {
		return fmt.Errorf("Page(base+20s) = %d users, %v; want the 5 seen since", len(page), err)
	}
	return nil
}

// checkTies pages through 3,000 users who share one time, among 50 others.
func checkTies(b *env) error {
	t := b.start
	users := map[string]time.Time{}
	for i := range 3000 {
		users[fmt.Sprint("tie", i)] = t.Add(5 * time.Second)
	}
	for i := range 50 {
		users[fmt.Sprint("other", i)] = t.Add(time.Duration(i) * 100 * time.Millisecond)
	}
	if err := b.touchAll(users); err != nil {
		return err
	}
	for _, limit := range []int{7, 500} {
		all, err := b.walk(t, limit, len(users), nil)
		if err != nil {
			return err
		}
		if err := sameUsers(all, users); err != nil {
			return fmt.Errorf("limit %d: %w", limit, err)
		}
	}
	return nil
}

// checkPagingUnderTouches walks 2,000 users (1,500 of them tied) while,
// during each page, another goroutine moves 10 of them ahead and adds 5
// new users. No user may come twice, and every user left alone exactly once.
func checkPagingUnderTouches(b *env) error {
	t := b.start
	users := map[string]time.Time{}
	for i := range 2000 {
		at := t.Add(10 * time.Second)
		if i >= 1500 {
			at = t.Add(time.Duration(i%10) * time.Second)
		}
		users[fmt.Sprint("w", i)] = at
	}
	if err := b.touchAll(users); err != nil {
		return err
	}
	moved := map[string]bool{} // written by the writer, read after wg.Wait
	var syncErr error
	var wg sync.WaitGroup
	round := 0
	between := func() {
		wg.Wait() // the last page's writes
		wg.Add(1)
		go func(round int) { // lands while the next page is read
			defer wg.Done()
			for k := range 10 {
				id := fmt.Sprint("w", (round*10+k)*13%2000)
				moved[id] = true
				b.touchAt(id, t.Add(20*time.Second))
			}
			for k := range 5 {
				b.touchAt(fmt.Sprint("new", round*5+k), t.Add(20*time.Second))
			}
			if err := b.sync(); err != nil {
				syncErr = err
			}
		}(round)
		round++
	}
	all, err := b.walk(t, 37, len(users)+2000, between)
	wg.Wait()
	if err != nil {
		return err
	}
	if syncErr != nil {
		return syncErr
	}
	got := map[string]bool{}
	for _, a := range all {
		got[a.ID] = true
	}
	for id := range users {
		if !moved[id] && !got[id] {
			return fmt.Errorf("user %q, left alone, was skipped", id)
		}
	}
	return nil
}

func checkBadCursors(b *env) error {
	t := b.start
	if err := b.touchAll(map[string]time.Time{"a": t, "b": t.Add(time.Second)}); err != nil {
		return err
	}
	for _, c := range []string{"x", "!!!!", "AAAA", "MTI6", "Og", "////", "a b", strings.Repeat("A", 5000)} {
		_, _, err := b.page(t, c, 10)
		if !errors.Is(err, presence.ErrInvalidCursor) {
			return fmt.Errorf("Page(cursor %.20q) = %v; want an error wrapping ErrInvalidCursor", c, err)
		}
	}
	return nil
}

func checkUnknownIDs(b *env) error {
	t := b.start
	long := strings.Repeat("x", presence.MaxIDLen+1)
	b.touchAt("known", t)
	b.touchAt("", t)
	b.touchAt(long, t)
	b.touchAt("zero-time", time.Time{})
	if err := b.sync(); err != nil {
		return err
	}
	if n, err := b.count(time.Time{}); err != nil || n != 1 {
		return fmt.Errorf("Count(all) = %d, %v; want 1 (empty and long IDs, and the zero time, ignored)", n, err)
	}
	for _, id := range []string{"nobody", "", long, "Known"} {
		if a, ok, err := b.get(id); ok || err != nil {
			return fmt.Errorf("Get(%.20q) = %v, %v, %v; want unknown", id, a, ok, err)
		}
	}
	if a, ok, err := b.get("known"); !ok || err != nil || !a.LastSeen.Equal(t) || a.ID != "known" {
		return fmt.Errorf("Get(known) = %+v, %v, %v; want last seen %v", a, ok, err, t)
	}
	return nil
}

// checkMaxMerge touches one user at times out of order, within one sync and
// across syncs: the newest time always wins.
func checkMaxMerge(b *env) error {
	t := b.start
	steps := []struct {
		at   time.Duration
		sync bool
		want time.Duration
	}{{20 * time.Second, false, 20 * time.Second}, {10 * time.Second, true, 20 * time.Second},
		{5 * time.Second, true, 20 * time.Second}, {30*time.Second + time.Millisecond, true, 30*time.Second + time.Millisecond}}
	for i, s := range steps {
		b.touchAt("m", t.Add(s.at))
		if !s.sync {
			continue
		}
		if err := b.sync(); err != nil {
			return err
		}
		a, ok, err := b.get("m")
		if !ok || err != nil || !a.LastSeen.Equal(t.Add(s.want)) {
			return fmt.Errorf("step %d: Get = %v, %v, %v; want last seen base+%v", i, a.LastSeen, ok, err, s.want)
		}
		if n, err := b.count(time.Time{}); err != nil || n != 1 {
			return fmt.Errorf("step %d: Count(all) = %d, %v; want 1", i, n, err)
		}
		page, _, err := b.page(t, "", 0)
		if err != nil || len(page) != 1 || !page[0].LastSeen.Equal(t.Add(s.want)) {
			return fmt.Errorf("step %d: Page = %v, %v; want one user at base+%v", i, page, err, s.want)
		}
	}
	return nil
}

// checkMeta sets meta; Get and Page return it.
func checkMeta(b *env) error {
	t := b.start
	b.touchAt("with", t)
	b.touchAt("without", t)
	if !b.SetMeta("with", "203.0.113.7") {
		return errors.New("SetMeta of a user just touched returned false")
	}
	if b.SetMeta("with", strings.Repeat("m", presence.MaxMetaLen+1)) {
		return errors.New("SetMeta took meta longer than MaxMetaLen")
	}
	if err := b.sync(); err != nil {
		return err
	}
	page, _, err := b.page(t, "", 0)
	if err != nil || len(page) != 2 {
		return fmt.Errorf("Page = %v, %v; want two users", page, err)
	}
	for _, a := range page {
		if want := map[string]string{"with": "203.0.113.7"}[a.ID]; a.Meta != want {
			return fmt.Errorf("Page: %q has meta %q, want %q", a.ID, a.Meta, want)
		}
	}
	if a, _, err := b.get("with"); err != nil || a.Meta != "203.0.113.7" {
		return fmt.Errorf("Get(with) = %+v, %v; want its meta", a, err)
	}
	return nil
}
