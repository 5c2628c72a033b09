package presencehttp

import (
	"context"
	"sync"
	"time"

	"github.com/onlinenow/presence"
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
	q      presence.Querier
	window time.Duration
	every  time.Duration
	now    func() time.Time

	mu   sync.Mutex
	ring []Point
	next int
	full bool
}

// HistoryOption configures [NewHistory].
type HistoryOption func(*History)

// WithHistoryWindow sets the window a sample counts (default 5m: "online").
func WithHistoryWindow(d time.Duration) HistoryOption {
	return func(h *History) { h.window = d }
}

// WithHistoryInterval sets how often [History.Run] samples (default 10s).
func WithHistoryInterval(d time.Duration) HistoryOption {
	return func(h *History) { h.every = d }
}

// WithHistorySize sets how many samples are kept (default 360: an hour of
// 10-second samples).
func WithHistorySize(n int) HistoryOption {
	return func(h *History) { h.ring = make([]Point, max(n, 0)) }
}

// WithHistoryClock sets the clock samples are taken by; nil selects time.Now.
func WithHistoryClock(now func() time.Time) HistoryOption {
	return func(h *History) { h.now = now }
}

// NewHistory returns a History of q's count. Values <= 0 (and a nil clock)
// select the defaults.
func NewHistory(q presence.Querier, opts ...HistoryOption) *History {
	h := &History{q: q}
	for _, o := range opts {
		o(h)
	}
	if h.window <= 0 {
		h.window = 5 * time.Minute
	}
	if h.every <= 0 {
		h.every = 10 * time.Second
	}
	if len(h.ring) == 0 {
		h.ring = make([]Point, 360)
	}
	if h.now == nil {
		h.now = time.Now
	}
	return h
}

// Sample takes one sample now.
func (h *History) Sample(ctx context.Context) error {
	now := h.now()
	n, err := h.q.Count(ctx, h.window)
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
