// Package tally counts on hot paths: a Tally is a few counters that many
// cores add to at once without writing a shared cache line.
package tally

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// Width is how many counters a Tally holds.
const Width = 8

// Tally is Width counters. Add costs about what an atomic add to an owned
// cache line costs, however many cores add at once, because each P adds to
// a cell of its own. One shared atomic would pull its line from core to
// core on every add; a counter per shard would too, since every core
// touches users of every shard. Load sums the cells: O(GOMAXPROCS), for
// scrapes.
//
// A P finds its cell through a sync.Pool, whose Get and Put stay on the P
// (its private slot) while the goroutine runs there. The pool may drop a
// cell at a GC; the next Get then takes a cell round-robin, which can share
// it with another P for a while: still exact, only slower.
//
// Safe for concurrent use. The zero Tally is not usable: see New.
type Tally struct {
	cells []cell
	next  atomic.Uint32
	pool  sync.Pool // of *cell
}

// cell is one P's counts, alone on its cache lines: 128 bytes, since x86
// cores fetch lines in adjacent pairs.
type cell struct {
	n [Width]atomic.Uint64
	_ [128 - 8*Width]byte
}

// New returns a Tally of zeros, with a cell per P.
func New() *Tally {
	return &Tally{cells: make([]cell, runtime.GOMAXPROCS(0))}
}

// Add adds one to counter k, which must be in [0, Width).
func (t *Tally) Add(k int) {
	c, _ := t.pool.Get().(*cell)
	if c == nil {
		c = &t.cells[int(t.next.Add(1)-1)%len(t.cells)]
	}
	c.n[k].Add(1)
	t.pool.Put(c)
}

// Load returns the sum of every Add(k) so far.
func (t *Tally) Load(k int) uint64 {
	var n uint64
	for i := range t.cells {
		n += t.cells[i].n[k].Load()
	}
	return n
}
