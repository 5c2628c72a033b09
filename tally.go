package presence

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// tally is a counter for the hot path: Add costs about what a store to an
// owned cache line costs, however many cores add at once, because each P
// adds to a cell of its own. One shared atomic would pull its line from
// core to core on every Touch; a counter per shard would too, since every
// core touches users of every shard. Load sums the cells: O(cells), for
// scrapes.
//
// A P finds its cell through a sync.Pool, whose Get and Put stay on the P
// (its private slot) while the goroutine runs there. The pool may drop a
// cell's token at a GC; the next Get then takes a cell round-robin, which
// can share a cell with another P until the next drop: still correct,
// only slower for a while.
//
// Safe for concurrent use. The zero tally is not usable: see newTally.
type tally struct {
	cells []tallyCell
	next  atomic.Uint32
	pool  sync.Pool // of *tallyCell
}

// tallyCell is one P's count, alone on its cache lines: 128 bytes, since
// x86 cores fetch lines in adjacent pairs.
type tallyCell struct {
	n atomic.Uint64
	_ [120]byte
}

func newTally() *tally {
	return &tally{cells: make([]tallyCell, runtime.GOMAXPROCS(0))}
}

// Add adds one.
func (t *tally) Add() {
	c, _ := t.pool.Get().(*tallyCell)
	if c == nil {
		c = &t.cells[int(t.next.Add(1)-1)%len(t.cells)]
	}
	c.n.Add(1)
	t.pool.Put(c)
}

// Load returns the sum of every Add so far.
func (t *tally) Load() uint64 {
	var n uint64
	for i := range t.cells {
		n += t.cells[i].n.Load()
	}
	return n
}
