package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/onlinenow/presence/redispresence/redistest"

	"github.com/onlinenow/presence"
	"github.com/redis/go-redis/v9"
)

// result holds one peer's figures. Durations are in nanoseconds.
type result struct {
	Peer    string `json:"peer"`
	Skipped string `json:"skipped,omitempty"`

	LoadPerSec float64 `json:"load_per_sec"`

	Touches        int64   `json:"touches"`
	TouchesPerSec  float64 `json:"touches_per_sec"`
	NsPerTouch     float64 `json:"ns_per_touch"` // wall time x workers / touches
	TouchP50       float64 `json:"touch_p50_ns"`
	TouchP99       float64 `json:"touch_p99_ns"`
	TouchP999      float64 `json:"touch_p999_ns"`
	AllocsPerTouch float64 `json:"allocs_per_touch"`

	Queries       int64   `json:"queries"`
	QueriesPerSec float64 `json:"queries_per_sec"` // per second of query time
	QueryP50      float64 `json:"query_p50_ns"`
	QueryP99      float64 `json:"query_p99_ns"`

	BytesPerUser float64 `json:"bytes_per_user"`

	// Engine only: the share of touches that moved an index entry (a
	// user's first touch in a new resolution slot): the slow path.
	MovesPerTouch float64 `json:"moves_per_touch,omitempty"`

	// Redis backend only: ZADD members it sent in the steady phase.
	RedisMembersSent uint64 `json:"redis_members_sent,omitempty"`

	SnapshotUsers      int     `json:"snapshot_users,omitempty"`
	SnapshotBytes      int64   `json:"snapshot_bytes,omitempty"`
	SnapshotWritePerS  float64 `json:"snapshot_write_records_per_sec,omitempty"`
	SnapshotLoadPerSec float64 `json:"snapshot_load_records_per_sec,omitempty"`
}

// clock is the time the workload runs on: the real clock, or simulated time
// that a goroutine advances every millisecond.
type clock struct {
	sim  bool
	ns   atomic.Int64
	stop chan struct{}
}

func newClock(p params) *clock {
	c := &clock{sim: p.Clock == "sim", stop: make(chan struct{})}
	c.ns.Store(time.Now().UnixNano())
	if c.sim {
		step := int64(float64(time.Millisecond) * p.SimSpeed)
		go func() {
			t := time.NewTicker(time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-c.stop:
					return
				case <-t.C:
					c.ns.Add(step)
				}
			}
		}()
	}
	return c
}

func (c *clock) now() time.Time {
	if !c.sim {
		return time.Now()
	}
	return time.Unix(0, c.ns.Load())
}

func (c *clock) close() { close(c.stop) }

// heapInUse returns the live heap after a collection.
func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func runPeer(p params, name string, progress io.Writer) result {
	r := result{Peer: name}
	clk := newClock(p)
	defer clk.close()

	heap0 := heapInUse()
	var pr peer
	var rdb *redis.Client
	var redisMem0 int64
	switch name {
	case "engine":
		pr = enginePeer{presence.New(presence.WithClock(clk.now))}
	case "naive":
		pr = newNaive()
	case "redis", "redis-backend":
		addr := p.Redis
		switch addr {
		case "off":
			r.Skipped = "-redis off"
			return r
		case "auto":
			srv, err := redistest.Run()
			if err != nil {
				r.Skipped = err.Error()
				return r
			}
			defer srv.Close()
			addr = srv.Addr()
		}
		if name == "redis" {
			rp, err := newRedisPeer(addr, p.Pipeline, p.Workers)
			if err != nil {
				r.Skipped = fmt.Sprintf("redis at %s: %v", addr, err)
				return r
			}
			rdb, pr = rp.c, rp
		} else {
			bp, err := newBackendPeer(addr, p.Workers)
			if err != nil {
				r.Skipped = fmt.Sprintf("redis at %s: %v", addr, err)
				return r
			}
			rdb, pr = bp.rdb, bp
		}
		redisMem0, _ = usedMemory(rdb)
	}
	defer pr.close()

	// Load: every user once, the workers taking contiguous ranges.
	start := time.Now()
	err := parallel(p.Workers, func(w int) error {
		tw := pr.worker()
		k := newKeys(p.Users, p.Dist, p.Skew, p.Seed+uint64(w))
		lo, hi := w*p.Users/p.Workers, (w+1)*p.Users/p.Workers
		for i := lo; i < hi; i++ {
			tw.touch(k.id(i), clk.now())
			if w == 0 && i%65536 == 0 {
				showProgress(progress, name, "load", float64(i-lo)/float64(hi-lo), start, int64(i-lo)*int64(p.Workers))
			}
		}
		return tw.flush()
	})
	if err != nil {
		r.Skipped = "load failed: " + err.Error()
		return r
	}
	r.LoadPerSec = float64(p.Users) / time.Since(start).Seconds()
	if rdb != nil {
		if m, err := usedMemory(rdb); err == nil {
			r.BytesPerUser = float64(m-redisMem0) / float64(p.Users)
		}
	} else {
		r.BytesPerUser = (float64(heapInUse()) - float64(heap0)) / float64(p.Users)
	}

	// Steady state: existing users, with queries.
	var moved0, sent0 uint64
	if ep, ok := pr.(enginePeer); ok {
		moved0 = ep.e.Stats().Moved
	}
	if bp, ok := pr.(*backendPeer); ok {
		sent0 = bp.s.Stats().Sent
	}
	if err := steady(p, pr, clk, progress, &r); err != nil {
		r.Skipped = "steady phase failed: " + err.Error()
		return r
	}
	if ep, ok := pr.(enginePeer); ok {
		r.MovesPerTouch = float64(ep.e.Stats().Moved-moved0) / float64(r.Touches)
	}
	if bp, ok := pr.(*backendPeer); ok {
		r.RedisMembersSent = bp.s.Stats().Sent - sent0
	}
	if ep, ok := pr.(enginePeer); ok && p.Snapshot {
		if err := snapshotPhase(ep.e, p, &r); err != nil {
			fmt.Fprintln(os.Stderr, "bench: snapshot phase:", err)
		}
	}
	showProgress(progress, "", "", 0, time.Time{}, 0)
	return r
}

// steady runs the steady-state phase and fills in its figures.
func steady(p params, pr peer, clk *clock, progress io.Writer, r *result) error {
	touchH := make([]hist, p.Workers)
	queryH := make([]hist, p.Workers+1)
	var touches, queries atomic.Int64
	var queryTime atomic.Int64
	var done atomic.Bool
	deadline := time.Now().Add(p.Duration)
	perWorker := p.Ops / int64(p.Workers)

	query := func(h *hist) error {
		since := clk.now().Add(-15 * time.Minute)
		t := time.Now()
		if _, err := pr.count(since); err != nil {
			return err
		}
		t1 := time.Now()
		if _, err := pr.recent(since, 100); err != nil {
			return err
		}
		t2 := time.Now()
		h.record(t1.Sub(t))
		h.record(t2.Sub(t1))
		queries.Add(2)
		queryTime.Add(int64(t2.Sub(t)))
		return nil
	}

	var poller sync.WaitGroup
	pollErr := make(chan error, 1)
	if p.QPS > 0 {
		poller.Add(1)
		go func() {
			defer poller.Done()
			t := time.NewTicker(time.Duration(float64(time.Second) / p.QPS))
			defer t.Stop()
			for range t.C {
				if done.Load() {
					return
				}
				if err := query(&queryH[p.Workers]); err != nil {
					pollErr <- err
					return
				}
			}
		}()
	}

	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	start := time.Now()
	err := parallel(p.Workers, func(w int) error {
		tw := pr.worker()
		k := newKeys(p.Users, p.Dist, p.Skew, p.Seed+1000+uint64(w))
		h := &touchH[w]
		var n int64
		for {
			if perWorker > 0 {
				if n >= perWorker {
					break
				}
			} else if n&1023 == 0 && time.Now().After(deadline) {
				break
			}
			id := k.id(k.next())
			if n&15 == 0 { // time one touch in 16: the clock costs as much as a touch
				t := time.Now()
				tw.touch(id, clk.now())
				h.record(time.Since(t))
			} else {
				tw.touch(id, clk.now())
			}
			n++
			if p.QueryEvery > 0 && n%int64(p.QueryEvery) == 0 {
				if err := query(&queryH[w]); err != nil {
					return err
				}
			}
			if w == 0 && n&65535 == 0 {
				frac := time.Since(start).Seconds() / p.Duration.Seconds()
				if perWorker > 0 {
					frac = float64(n) / float64(perWorker)
				}
				showProgress(progress, "", "steady", frac, start, n*int64(p.Workers))
			}
		}
		touches.Add(n)
		return tw.flush()
	})
	elapsed := time.Since(start)
	runtime.ReadMemStats(&m1)
	done.Store(true)
	poller.Wait()
	if err != nil {
		return err
	}
	select {
	case err := <-pollErr:
		return err
	default:
	}

	var th, qh hist
	for i := range touchH {
		th.merge(&touchH[i])
	}
	for i := range queryH {
		qh.merge(&queryH[i])
	}
	r.Touches = touches.Load()
	r.TouchesPerSec = float64(r.Touches) / elapsed.Seconds()
	r.NsPerTouch = float64(elapsed.Nanoseconds()) * float64(p.Workers) / float64(r.Touches)
	r.TouchP50 = float64(th.quantile(0.50))
	r.TouchP99 = float64(th.quantile(0.99))
	r.TouchP999 = float64(th.quantile(0.999))
	r.AllocsPerTouch = float64(m1.Mallocs-m0.Mallocs) / float64(r.Touches)
	r.Queries = queries.Load()
	if qt := queryTime.Load(); qt > 0 {
		r.QueriesPerSec = float64(r.Queries) / time.Duration(qt).Seconds()
	}
	r.QueryP50 = float64(qh.quantile(0.50))
	r.QueryP99 = float64(qh.quantile(0.99))
	return nil
}

// snapshotPhase writes the engine's final state to a file and loads it back
// as a restart would.
func snapshotPhase(e *presence.Engine, p params, r *result) error {
	dir, err := os.MkdirTemp("", "presence-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "snap")
	n := e.Len()
	r.SnapshotUsers = n
	start := time.Now()
	if err := e.SaveFile(path); err != nil {
		return err
	}
	r.SnapshotWritePerS = float64(n) / time.Since(start).Seconds()
	if fi, err := os.Stat(path); err == nil {
		r.SnapshotBytes = fi.Size()
	}
	start = time.Now()
	back, err := presence.Open(path)
	if err != nil {
		return err
	}
	r.SnapshotLoadPerSec = float64(back.Len()) / time.Since(start).Seconds()
	if back.Len() != n {
		return fmt.Errorf("loaded %d users of %d", back.Len(), n)
	}
	return back.Close()
}

// parallel runs f(0..n-1) on n goroutines and returns the first error.
func parallel(n int, f func(w int) error) error {
	var wg sync.WaitGroup
	errs := make([]error, n)
	for w := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[w] = f(w)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

var progressPeer string

// showProgress prints a progress line on w (a terminal, or nil for none);
// an empty phase clears it.
func showProgress(w io.Writer, peer, phase string, frac float64, start time.Time, done int64) {
	if w == nil {
		return
	}
	if peer != "" {
		progressPeer = peer
	}
	if phase == "" {
		fmt.Fprint(w, "\r\033[K")
		return
	}
	el := time.Since(start)
	fmt.Fprintf(w, "\r\033[K%s %s: %3.0f%%, %s, %.0f ops/s", progressPeer, phase, min(frac, 1)*100,
		el.Round(100*time.Millisecond), float64(done)/el.Seconds())
}
