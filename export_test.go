package presence

import "unsafe"

// ItemSize is the size of one index item; TestItemLayout pins it.
const ItemSize = unsafe.Sizeof(item{})
