package presence

import "errors"

// Sentinel errors. Functions that return them wrap them with detail using %w,
// so test for them with [errors.Is].
var (
	// ErrInvalidCursor is returned by [Cursor.UnmarshalText] when the text
	// is not a cursor this package produced.
	ErrInvalidCursor = errors.New("presence: invalid cursor")
)
