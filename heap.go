package presence

// mergeHeap is the package's one k-way merge: a binary min-heap of sorted
// sources, ordered by their heads. A page walk merges the shards' lists
// newest first (page.go); a snapshot merges a file's runs oldest first
// (merge.go). Not safe for concurrent use.
type mergeHeap[S any] struct {
	s    []S
	less func(a, b *S) bool // a's head goes before b's
}

// init orders the sources, each of which has a head.
func (h *mergeHeap[S]) init() {
	for i := len(h.s)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
}

// fix restores the order after the first source's head moved on.
func (h *mergeHeap[S]) fix() { h.down(0) }

// pop removes the first source, which has no head left.
func (h *mergeHeap[S]) pop() {
	last := len(h.s) - 1
	h.s[0] = h.s[last]
	h.s = h.s[:last]
	h.down(0)
}

func (h *mergeHeap[S]) down(i int) {
	for {
		m, l, r := i, 2*i+1, 2*i+2
		if l < len(h.s) && h.less(&h.s[l], &h.s[m]) {
			m = l
		}
		if r < len(h.s) && h.less(&h.s[r], &h.s[m]) {
			m = r
		}
		if m == i {
			return
		}
		h.s[i], h.s[m] = h.s[m], h.s[i]
		i = m
	}
}
