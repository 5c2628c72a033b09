package presence

import "unsafe"

// ItemSize is the size of one index item; TestItemLayout pins it.
const ItemSize = unsafe.Sizeof(item{})

// CompareInSlot orders two IDs filed in one slot as the engine's index
// does, for the reference model: -1, 0 or +1.
func CompareInSlot(e *Engine, a, b string) int {
	ia, ib := e.lay.item(0, a, nil), e.lay.item(0, b, nil)
	switch {
	case itemLess(ia, ib):
		return -1
	case itemLess(ib, ia):
		return 1
	}
	return 0
}
