package middleware

import (
	"sync/atomic"

	"github.com/puzpuzpuz/xsync/v3"
)

// Counters counts what the Track and Hold middleware given it
// ([WithCounters]) did with the requests they saw; the presenceprom module
// exports them as metrics. One Counters may serve several middleware.
//
// Counters is safe for concurrent use. Its per-request counters are
// striped (xsync.Counter, as the engine's and the Store's touch counts),
// so requests on many cores do not write one cache line (the open holds,
// changed twice per long-lived request, are one atomic). Make it with
// NewCounters.
type Counters struct {
	n    [kinds]*xsync.Counter
	open atomic.Int64
}

// What Counters counts, as counters of Counters.n.
const (
	recorded = iota
	skipped
	anonymous
	byStatus
	held
	kinds
)

// CounterStats is what a Counters holds at one moment.
type CounterStats struct {
	Recorded  uint64 // requests recorded (by Track) or held (by Hold) for a user
	Skipped   uint64 // requests a skip rule matched
	Anonymous uint64 // requests the IdentityFunc named no user for
	Status    uint64 // responses Track did not record for their status class
	Held      uint64 // holds Hold started
	Open      int64  // holds open now: long-lived requests in progress
}

// NewCounters returns zeroed Counters.
func NewCounters() *Counters {
	c := &Counters{}
	for k := range c.n {
		c.n[k] = xsync.NewCounter()
	}
	return c
}

// Stats returns the counts. Each is read atomically, the set is not.
func (c *Counters) Stats() CounterStats {
	v := func(k int) uint64 { return uint64(c.n[k].Value()) }
	return CounterStats{
		Recorded: v(recorded), Skipped: v(skipped), Anonymous: v(anonymous),
		Status: v(byStatus), Held: v(held), Open: c.open.Load(),
	}
}

// WithCounters makes the middleware count its requests in c (nil counts
// nothing, the default).
func WithCounters(c *Counters) Option { return func(cf *config) { cf.counters = c } }

// inc adds one to counter k; on nil Counters it does nothing.
func (c *Counters) inc(k int) {
	if c != nil {
		c.n[k].Inc()
	}
}
