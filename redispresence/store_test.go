package redispresence_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/onlinenow/presence"
	"github.com/onlinenow/presence/redispresence"
	"github.com/onlinenow/presence/redispresence/redistest"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// connect starts a redis-server and returns it with a client closed at the
// end of the test.
func connect(t *testing.T) (*redistest.Server, redis.UniversalClient) {
	srv := redistest.Start(t)
	rdb := client(srv)
	t.Cleanup(func() { rdb.Close() })
	return srv, rdb
}

func client(s *redistest.Server) redis.UniversalClient {
	return redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{s.Addr()},
		DialTimeout: 200 * time.Millisecond, ReadTimeout: 500 * time.Millisecond, WriteTimeout: 500 * time.Millisecond,
		MaxRetries: -1})
}

// t0 is the tests' now: newStore's clock stands still at it, unless a
// test gives a clock of its own.
var t0 = time.Now().Truncate(time.Second)

// errOf is the error of a call that returns a value too.
func errOf[T any](_ T, err error) error { return err }

// forever is a window that holds every user.
const forever = 100 * 365 * 24 * time.Hour

// ago is the window from t to t0 (forever from the zero time).
func ago(t time.Time) time.Duration {
	if t.IsZero() {
		return forever
	}
	return t0.Sub(t)
}

func newStore(t *testing.T, rdb redis.UniversalClient, opts ...redispresence.Option) *redispresence.Store {
	t.Helper()
	// A long interval: the tests flush by hand.
	opts = append([]redispresence.Option{redispresence.WithFlushInterval(time.Hour),
		redispresence.WithClock(func() time.Time { return t0 })}, opts...)
	s, err := redispresence.New(rdb, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

// walk pages through the users s saw since t, newest first, page n asking
// for size(n) users, until Page returns no cursor, and returns the pages.
func walk(t testing.TB, s *redispresence.Store, since time.Time, size func(n int) int) [][]presence.Activity {
	t.Helper()
	var pages [][]presence.Activity
	for n, cur := 0, ""; ; n++ {
		require.Less(t, n, 10_000, "the walk does not end")
		page, next, err := s.Page(context.Background(), ago(since), cur, size(n))
		require.NoError(t, err)
		pages = append(pages, page)
		if next == "" {
			return pages
		}
		cur = next
	}
}

// pagesOf is a walk's page size function for pages of k.
func pagesOf(k int) func(int) int { return func(int) int { return k } }

func TestTwoNodesOneView(t *testing.T) {
	_, rdb := connect(t)
	a, b := newStore(t, rdb), newStore(t, rdb)
	ctx := context.Background()
	for i := range 50 {
		a.TouchAt(fmt.Sprint("a", i), t0.Add(-time.Duration(i)*time.Minute))
		b.TouchAt(fmt.Sprint("b", i), t0.Add(-time.Duration(i)*time.Minute-30*time.Second))
	}
	a.TouchAt("both", t0.Add(-time.Hour))
	b.TouchAt("both", t0.Add(-time.Second)) // the newer time wins, from either node
	a.SetMeta("a0", "203.0.113.1")
	require.NoError(t, a.Flush(ctx))
	require.NoError(t, b.Flush(ctx))

	for _, node := range []*redispresence.Store{a, b} {
		n, err := node.Count(ctx, ago(t0.Add(-10*time.Minute-time.Second)))
		require.NoError(t, err)
		assert.Equal(t, 11+10+1, n, "a0..a10, b0..b9 and both")
		page, _, err := node.Page(ctx, ago(t0.Add(-3*time.Minute)), "", 10)
		require.NoError(t, err)
		var got []string
		for _, u := range page {
			got = append(got, u.ID)
		}
		assert.Equal(t, []string{"a0", "both", "b0", "a1", "b1", "a2", "b2", "a3"}, got)
		u, ok, err := node.Get(ctx, "both")
		require.NoError(t, err)
		require.True(t, ok)
		assert.Equal(t, t0.Add(-time.Second).UnixMicro(), u.LastSeen.UnixMicro())
		u, _, _ = node.Get(ctx, "a0")
		assert.Equal(t, "203.0.113.1", u.Meta)
		_, ok, err = node.Get(ctx, "nobody")
		require.NoError(t, err)
		assert.False(t, ok)
	}
}

func TestCoalescing(t *testing.T) {
	_, rdb := connect(t)
	s := newStore(t, rdb)
	ctx := context.Background()
	// Two flush intervals ("seconds"), each 1M touches from 50k users.
	ids := make([]string, 50_000)
	for i := range ids {
		ids[i] = fmt.Sprint("u", i)
	}
	for round := range 2 {
		for i := range 1_000_000 {
			s.TouchAt(ids[i%len(ids)], t0.Add(time.Duration(round*1_000_000+i)*time.Microsecond))
		}
		require.NoError(t, s.Flush(ctx))
	}
	st := s.Stats()
	assert.Equal(t, uint64(2_000_000), st.Touches)
	assert.Equal(t, uint64(100_000), st.Sent, "one ZADD member per active user per flush")
	t.Logf("coalescing: %d touches, %d ZADD members sent: %.0fx", st.Touches, st.Sent, float64(st.Touches)/float64(st.Sent))
	n, err := s.Count(ctx, forever)
	require.NoError(t, err)
	assert.Equal(t, 50_000, n)
}

// TestMetaSentOnce: a user's meta is written when it changes, not again
// with every flush of a newer time. Redis itself counts the writes (INFO
// commandstats).
func TestMetaSentOnce(t *testing.T) {
	_, rdb := connect(t)
	s := newStore(t, rdb)
	ctx := context.Background()
	hsets := func() int {
		t.Helper()
		info, err := rdb.Info(ctx, "commandstats").Result()
		require.NoError(t, err)
		for _, line := range strings.Split(info, "\r\n") {
			if rest, ok := strings.CutPrefix(line, "cmdstat_hset:calls="); ok {
				n, err := strconv.Atoi(rest[:strings.IndexByte(rest, ',')])
				require.NoError(t, err)
				return n
			}
		}
		return 0
	}
	for i := range 100 {
		id := fmt.Sprint("u", i)
		s.TouchAt(id, t0)
		require.True(t, s.SetMeta(id, "203.0.113.7"))
	}
	require.NoError(t, s.Flush(ctx))
	first := hsets()
	require.Positive(t, first)
	for round := 1; round <= 3; round++ {
		for i := range 100 {
			s.TouchAt(fmt.Sprint("u", i), t0.Add(time.Duration(round)*time.Second))
		}
		require.NoError(t, s.Flush(ctx))
	}
	assert.Equal(t, first, hsets(), "newer times alone send no meta")
	require.True(t, s.SetMeta("u7", "198.51.100.1"))
	require.NoError(t, s.Flush(ctx))
	assert.Equal(t, first+1, hsets(), "a changed meta is sent, in one HSET")
	a, ok, err := s.Get(ctx, "u7")
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, "198.51.100.1", a.Meta)
	assert.Equal(t, t0.Add(3*time.Second).UnixMicro(), a.LastSeen.UnixMicro())
}

func TestRedisDownThenBack(t *testing.T) {
	srv, rdb := connect(t)
	var errs []error
	s := newStore(t, rdb, redispresence.WithTimeout(300*time.Millisecond), redispresence.WithMaxBuffered(1500),
		redispresence.WithErrorHandler(func(err error) { errs = append(errs, err) }))
	ctx := context.Background()
	s.TouchAt("before", t0)
	require.NoError(t, s.Flush(ctx))
	up := s.Stats()
	assert.Equal(t, uint64(1), up.FlushCalls)
	assert.Positive(t, up.FlushTime)
	assert.False(t, up.LastFlush.IsZero())

	srv.Stop()
	for i := range 2000 { // never blocks, never fails; 1,499 more fit
		s.TouchAt(fmt.Sprint("down", i), t0.Add(time.Duration(i)*time.Millisecond))
	}
	s.TouchAt("before", t0.Add(time.Hour)) // buffered already: kept
	require.Error(t, s.Flush(ctx))
	st := s.Stats()
	assert.Equal(t, uint64(501), st.Dropped)
	assert.Equal(t, uint64(1), st.FlushErrors)
	assert.Equal(t, 1500, st.Pending)
	assert.Equal(t, uint64(2), st.FlushCalls, "a failed flush is timed too")
	assert.Greater(t, st.FlushTime, up.FlushTime)
	assert.Equal(t, up.LastFlush, st.LastFlush, "the last good flush stands")

	qctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	_, err := s.Count(qctx, ago(t0))
	assert.Error(t, err, "queries fail while Redis is down")
	_, _, err = s.Page(qctx, time.Minute, "", 10)
	assert.Error(t, err)

	srv.Restart() // same port, empty: everything buffered must be written again
	require.Eventually(t, func() bool { return s.Flush(ctx) == nil }, 10*time.Second, 50*time.Millisecond)
	n, err := s.Count(ctx, forever)
	require.NoError(t, err)
	assert.Equal(t, 1500, n, "every buffered user reached Redis")
	u, ok, err := s.Get(ctx, "before")
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, t0.Add(time.Hour).UnixMicro(), u.LastSeen.UnixMicro())
	assert.Zero(t, s.Stats().Pending)
	assert.Empty(t, errs, "Flush called by hand returns its error; the flusher reports its own")
}

func TestFlusherReportsAndRecovers(t *testing.T) {
	srv, rdb := connect(t)
	errc := make(chan error, 100)
	var logs lockedBuffer
	s, err := redispresence.New(rdb, redispresence.WithFlushInterval(20*time.Millisecond),
		redispresence.WithTimeout(200*time.Millisecond),
		redispresence.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))),
		redispresence.WithErrorHandler(func(err error) { errc <- err }))
	require.NoError(t, err)
	defer s.Close(context.Background())
	srv.Stop()
	s.TouchAt("x", t0)
	select {
	case err := <-errc:
		assert.ErrorContains(t, err, "flush")
	case <-time.After(10 * time.Second):
		t.Fatal("the flusher did not report the failure")
	}
	srv.Restart()
	ctx := context.Background()
	require.Eventually(t, func() bool {
		_, ok, err := s.Get(ctx, "x")
		return err == nil && ok
	}, 40*time.Second, 50*time.Millisecond, "the flusher writes the buffered user once Redis is back")
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "flushing again") }, 10*time.Second, 10*time.Millisecond)
	out := logs.String()
	assert.Contains(t, out, `level=ERROR msg="redispresence: write to Redis failed" prefix=presence err="redispresence: flush of 1 entries under presence:`)
	assert.Contains(t, out, `level=INFO msg="redispresence: flushing again" failed_flushes=`)
}

// lockedBuffer is a bytes.Buffer for a logger written by the flusher and
// read by the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestRetentionAndForget(t *testing.T) {
	_, rdb := connect(t)
	s := newStore(t, rdb, redispresence.WithRetention(time.Hour), redispresence.WithClock(func() time.Time { return t0 }))
	ctx := context.Background()
	s.TouchAt("old", t0.Add(-2*time.Hour))
	s.SetMeta("old", "m")
	s.TouchAt("new", t0.Add(-time.Minute))
	s.TouchAt("gone", t0)
	require.NoError(t, s.Flush(ctx))
	n, err := s.Prune(ctx, t0.Add(-time.Hour))
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	n, err = s.Prune(ctx, t0.Add(-time.Hour))
	require.NoError(t, err)
	assert.Zero(t, n, "idempotent")
	_, ok, _ := s.Get(ctx, "old")
	assert.False(t, ok)
	assert.Zero(t, metaEntries(t, rdb), "the trimmed user's meta went with it")
	_, ok, _ = s.Get(ctx, "new")
	assert.True(t, ok)
	assert.Equal(t, uint64(1), s.Stats().Pruned)

	require.NoError(t, errOf(s.Forget(ctx, "gone")))
	_, ok, _ = s.Get(ctx, "gone")
	assert.False(t, ok)
	require.NoError(t, s.Flush(ctx))
	_, ok, _ = s.Get(ctx, "gone")
	assert.False(t, ok, "nothing of it was left in the buffer to write back")
}

// metaEntries counts the fields of every meta hash.
func metaEntries(t *testing.T, rdb redis.UniversalClient) int64 {
	keys, err := rdb.Keys(context.Background(), "presence:meta:*").Result()
	require.NoError(t, err)
	var n int64
	for _, k := range keys {
		n += rdb.HLen(context.Background(), k).Val()
	}
	return n
}

func TestCloseFlushesAndLeavesNoGoroutine(t *testing.T) {
	_, rdb := connect(t)
	rdb.Ping(context.Background()) // the client's own pool goroutines start now
	before := runtime.NumGoroutine()
	s, err := redispresence.New(rdb, redispresence.WithFlushInterval(time.Hour))
	require.NoError(t, err)
	s.TouchAt("late", t0)
	require.NoError(t, s.Close(context.Background()))
	require.NoError(t, s.Close(context.Background()))
	_, ok, err := s.Get(context.Background(), "late")
	require.NoError(t, err)
	assert.True(t, ok, "Close flushed what was pending")
	// Not assert.Eventually: it runs its condition on a goroutine of its own.
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // goroutines ending, not expiry
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<20)
		t.Fatalf("goroutines: %d before, %d after Close:\n%s", before, n, buf[:runtime.Stack(buf, true)])
	}
}

// TestKeepsItsOwnCopyOfIDs touches with IDs that alias one reused buffer, as
// a server parsing requests would pass them.
func TestKeepsItsOwnCopyOfIDs(t *testing.T) {
	_, rdb := connect(t)
	s := newStore(t, rdb)
	buf := []byte("user-0")
	for i := range 10 {
		buf[5] = byte('0' + i)
		s.TouchAt(unsafe.String(&buf[0], len(buf)), t0)
	}
	buf[5] = 'x'
	require.NoError(t, s.Flush(context.Background()))
	for i := range 10 {
		_, ok, err := s.Get(context.Background(), fmt.Sprint("user-", i))
		require.NoError(t, err)
		assert.True(t, ok, "user-%d", i)
	}
	assert.Equal(t, 10, s.Stats().Buffered)
}

// TestConcurrentTouchesAndFlushes touches from many goroutines while the
// flusher runs every few milliseconds and idle users leave the buffer; once
// quiet and flushed, Redis must hold each user's newest time.
func TestConcurrentTouchesAndFlushes(t *testing.T) {
	_, rdb := connect(t)
	s, err := redispresence.New(rdb, redispresence.WithFlushInterval(2*time.Millisecond))
	require.NoError(t, err)
	defer s.Close(context.Background())
	const workers, users = 6, 500
	newest := make([]map[string]int64, workers)
	done := make(chan struct{})
	for g := range workers {
		newest[g] = map[string]int64{}
		go func() {
			defer func() { done <- struct{}{} }()
			rng := rand.New(rand.NewPCG(uint64(g), 5))
			for range 20_000 {
				id := fmt.Sprint("u", rng.IntN(users))
				at := t0.Add(-time.Duration(rng.IntN(3600_000_000)) * time.Microsecond) // old enough to leave the buffer
				s.TouchAt(id, at)
				if us := at.UnixMicro(); us > newest[g][id] {
					newest[g][id] = us
				}
			}
		}()
	}
	for range workers {
		<-done
	}
	require.NoError(t, s.Close(context.Background()))
	want := map[string]int64{}
	for _, m := range newest {
		for id, us := range m {
			want[id] = max(want[id], us)
		}
	}
	ctx := context.Background()
	for id, us := range want {
		u, ok, err := s.Get(ctx, id)
		require.NoError(t, err)
		require.True(t, ok, id)
		require.Equal(t, us, u.LastSeen.UnixMicro(), id)
	}
	n, err := s.Count(ctx, forever)
	require.NoError(t, err)
	assert.Equal(t, len(want), n)
}

// TestPagingWhenOneSetHoldsTheNewest makes the newest users all live in one
// sorted set, so a page's fair share per set is not enough: the walk must
// ask that set again and still return every user once, newest first.
func TestPagingWhenOneSetHoldsTheNewest(t *testing.T) {
	_, rdb := connect(t)
	s := newStore(t, rdb)
	ctx := context.Background()
	for i := range 2000 {
		s.TouchAt(fmt.Sprint("c", i), t0.Add(-time.Hour))
	}
	require.NoError(t, s.Flush(ctx))
	var crowded []string
	for k := range 16 {
		members, err := rdb.ZRange(ctx, fmt.Sprintf("presence:{%d}", k), 0, -1).Result()
		require.NoError(t, err)
		if len(members) > len(crowded) {
			crowded = members
		}
	}
	newest := crowded[:100]
	for i, id := range newest {
		s.TouchAt(id, t0.Add(-time.Duration(i)*time.Microsecond))
	}
	require.NoError(t, s.Flush(ctx))

	var got []string
	var prev int64 = math.MaxInt64
	for _, u := range slices.Concat(walk(t, s, t0.Add(-2*time.Hour), pagesOf(30))...) {
		us := u.LastSeen.UnixMicro()
		require.LessOrEqual(t, us, prev, "newest first")
		prev = us
		got = append(got, u.ID)
	}
	require.Len(t, got, 2000)
	assert.Equal(t, newest, got[:100], "the crowded set's newest users lead, in order")
	seen := map[string]bool{}
	for _, id := range got {
		require.False(t, seen[id], id)
		seen[id] = true
	}
}

// TestSlowRedisBoundedByTimeout freezes redis-server (SIGSTOP): connections
// are accepted but never answered, and the client has no read timeout of
// its own. Touches still return at once, and every call that waits on
// Redis, with no deadline of its own, gives up after the Store's timeout,
// whether or not the client lets contexts cut network waits short
// (ContextTimeoutEnabled).
func TestSlowRedisBoundedByTimeout(t *testing.T) {
	for _, ctxTimeouts := range []bool{true, false} {
		t.Run(fmt.Sprintf("ContextTimeoutEnabled=%v", ctxTimeouts), func(t *testing.T) {
			srv := redistest.Start(t)
			rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{srv.Addr()},
				ReadTimeout: -1, WriteTimeout: -1, ContextTimeoutEnabled: ctxTimeouts, MaxRetries: -1})
			defer rdb.Close()
			s := newStore(t, rdb, redispresence.WithTimeout(200*time.Millisecond), redispresence.WithEvents())
			require.NoError(t, srv.Signal(syscall.SIGSTOP))
			defer srv.Signal(syscall.SIGCONT)

			s.TouchAt("x", t0)
			bg := context.Background()
			calls := map[string]func() error{
				"Count":     func() error { return errOf(s.Count(bg, time.Minute)) },
				"Page":      func() error { _, _, err := s.Page(bg, time.Minute, "", 10); return err },
				"Get":       func() error { _, _, err := s.Get(bg, "x"); return err },
				"Room.Page": func() error { _, _, err := s.Room("r").Page(bg, time.Minute, "", 10); return err },
				"Rooms":     func() error { return errOf(s.Rooms(bg, time.Minute, 10)) },
				"RoomsOf":   func() error { return errOf(s.RoomsOf(bg, "x")) },
				"Leave":     func() error { return errOf(s.Leave(bg, "r", "x")) },
				"Forget":    func() error { return errOf(s.Forget(bg, "x")) },
				"Prune":     func() error { return errOf(s.Prune(bg, t0)) },
				"Sweep":     func() error { return s.Sweep(bg) },
				"Subscribe": func() error { return errOf(s.Subscribe(bg, 1)) },
			}
			errs := make(chan error, len(calls))
			go func() {
				for name, call := range calls {
					errs <- fmt.Errorf("%s: %w", name, call())
				}
			}()
			for range calls {
				select {
				case err := <-errs:
					if ctxTimeouts {
						assert.Error(t, errors.Unwrap(err)) // a deadline, or the i/o timeout it set on the connection
					} else {
						assert.ErrorIs(t, err, context.DeadlineExceeded)
					}
				case <-time.After(20 * time.Second):
					t.Fatal("a call waited on a frozen Redis past the Store's timeout")
				}
			}
		})
	}
}

// TestPagingWhileSetsChange touches a user between two fetches of one page
// from one set: the page's second fetch must go on after the first one's
// last user, wherever the touch moved others in the set. A fetch that went
// on by offset returned a user twice (first page) or skipped one (later
// pages), as the touched user moved into or out of the fetched range.
func TestPagingWhileSetsChange(t *testing.T) {
	_, rdb := connect(t)
	ctx := context.Background()
	// Which page's fetches the touch falls between, and which user, by its
	// place in set 0 newest first: on the first page one its first fetch
	// did not reach (it moves into the range before the second fetch), on
	// the second one its first fetch took (it moves out of the range).
	for _, tc := range []struct{ page, user int }{{0, 16}, {1, 25}} {
		page := tc.page
		t.Run(fmt.Sprint("page-", page), func(t *testing.T) {
			prefix := fmt.Sprint("change", page)
			s := newStore(t, rdb, redispresence.WithPrefix(prefix), redispresence.WithShards(4))
			for i := range 400 {
				s.TouchAt(fmt.Sprint("user-", i), t0.Add(-time.Hour-time.Duration(i)*time.Second))
			}
			require.NoError(t, s.Flush(ctx))
			// The newest 40 users are all in set 0, so a page of 20 takes
			// set 0's first fetch (14 users) whole and fetches from it again.
			crowded, err := rdb.ZRange(ctx, prefix+":{0}", 0, 39).Result()
			require.NoError(t, err)
			require.Len(t, crowded, 40)
			for i, id := range crowded { // the last is the newest
				s.TouchAt(id, t0.Add(-time.Duration(len(crowded)-i)*time.Second))
			}
			require.NoError(t, s.Flush(ctx))

			var touched string
			fired := false
			touch := func() {
				if !fired {
					fired = true
					touched = crowded[len(crowded)-1-tc.user]
					s.TouchAt(touched, t0.Add(time.Minute))
					require.NoError(t, s.Flush(ctx))
				}
			}
			hook := &fetchHook{}
			rdb.AddHook(hook)
			defer hook.arm(nil)
			seen := map[string]int{}
			pages := walk(t, s, t0.Add(-48*time.Hour), func(n int) int {
				if n == tc.page { // the touch falls between this page's asks only
					hook.arm(touch)
				} else {
					hook.arm(nil)
				}
				return 20
			})
			for _, u := range slices.Concat(pages...) {
				seen[u.ID]++
			}
			require.NotEmpty(t, touched, "the page fetched from a set twice")
			for i := range 400 {
				id := fmt.Sprint("user-", i)
				if id == touched {
					assert.LessOrEqual(t, seen[id], 1, id)
					continue
				}
				assert.Equal(t, 1, seen[id], "%s: an untouched user appears exactly once", id)
			}
		})
	}
}

// fetchHook calls before ahead of each page fetch (a pipeline that reads
// sets: ZREVRANGEBYSCORE or the page script) after the first since arm.
type fetchHook struct {
	before  func()
	fetches int
}

func (h *fetchHook) arm(before func()) { h.before, h.fetches = before, 0 }

func (h *fetchHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *fetchHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

func (h *fetchHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if len(cmds) > 0 && h.before != nil {
			switch cmds[0].Name() {
			case "zrevrangebyscore", "evalsha", "eval":
				if h.fetches++; h.fetches > 1 {
					h.before()
				}
			}
		}
		return next(ctx, cmds)
	}
}

// TestRejectedCounted: an invalid ID or room name is ignored and counted in
// Stats, as the engine counts it; a valid touch beside it is kept.
func TestRejectedCounted(t *testing.T) {
	_, rdb := connect(t)
	s := newStore(t, rdb)
	long := strings.Repeat("x", presence.MaxIDLen+1)
	s.TouchAt("", t0)
	s.Touch(long)
	s.TouchInAt("r", "", t0)
	s.Hold(long)()
	s.TouchInAt("a\x00b", "u", t0) // the global touch of u is kept
	s.HoldIn("", "u")()
	st := s.Stats()
	assert.Equal(t, uint64(4), st.RejectedIDs)
	assert.Equal(t, uint64(2), st.RejectedRooms)
	ctx := context.Background()
	require.NoError(t, s.Flush(ctx))
	n, err := s.Count(ctx, forever)
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	rooms, err := s.Rooms(ctx, forever, 0)
	require.NoError(t, err)
	assert.Empty(t, rooms)
}
