package presencehttp

import (
	"context"
	"sync"
	"time"
)

// Point is one sample of the online count.
type Point struct {
	T     time.Time `json:"t"`
	Count int       `json:"count"`
}

// History samples how many users are online (seen within a window) at a
// fixed interval into a ring of the latest samples, for the dashboard's
// chart. It is safe for concurrent use. It starts no goroutine of its own:
// run [History.Run] in one, and stop it with its context.
type History struct {
	q      Querier
	window time.Duration
	every  time.Duration
	now    func() time.Time

	mu   sync.Mutex
	ring []Point
	next int
	full bool
}

// NewHistory returns a History of q's count over window (for example 5m:
// "online"), sampled every interval, keeping size samples (an hour of
// 10-second samples is 360). Values <= 0 select 5m, 10s and 360.
func NewHistory(q Querier, window, every time.Duration, size int) *History {
	if window <= 0 {
		window = 5 * time.Minute
	}
	if every <= 0 {
		every = 10 * time.Second
	}
	if size <= 0 {
		size = 360
	}
	return &History{q: q, window: window, every: every, now: time.Now, ring: make([]Point, size)}
}

// Sample takes one sample now.
func (h *History) Sample(ctx context.Context) error {
	now := h.now()
	n, err := h.q.CountSince(ctx, now.Add(-h.window))
	if err != nil {
		return err
	}
	h.mu.Lock()
	h.ring[h.next] = Point{T: now.UTC(), Count: n}
	h.next = (h.next + 1) % len(h.ring)
	h.full = h.full || h.next == 0
	h.mu.Unlock()
	return nil
}

// Run samples at once and then every interval until ctx is done. A failed
// sample (a remote backend that is down) is skipped: the chart shows a gap.
func (h *History) Run(ctx context.Context) {
	t := time.NewTicker(h.every)
	defer t.Stop()
	for {
		h.Sample(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Points returns the samples, oldest first.
func (h *History) Points() []Point {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.full {
		return append([]Point(nil), h.ring[:h.next]...)
	}
	return append(append([]Point(nil), h.ring[h.next:]...), h.ring[:h.next]...)
}
