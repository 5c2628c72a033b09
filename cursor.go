package presence

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
)

// Cursor is a position in a newest-first walk of the index: the place of the
// last user a page returned. The next page starts strictly after it, so a
// user touched between pages is not returned twice, and one left alone is
// not skipped. The zero Cursor is the start of a walk.
//
// A Cursor is a plain value, safe to copy and to use from several
// goroutines. Its text form is opaque and URL-safe; it names an ID, so do
// not hand it to clients that may not see that ID. It belongs to engines of
// the resolution that made it, and stays valid across restarts (a user
// restored at a newer place in its slot is skipped, as if touched).
type Cursor struct {
	key   int64 // the item's key
	id    string
	scope uint32 // the walk's: 0 for the engine's users, scopeOf(room) for a room's
	set   bool
}

// IsZero reports whether c is the start of a walk, which is also what
// [Engine.Page] returns when there is nothing after the page.
func (c Cursor) IsZero() bool { return !c.set }

// MarshalText encodes c as unpadded base64url text. The zero Cursor encodes
// as the empty string.
func (c Cursor) MarshalText() ([]byte, error) {
	if !c.set {
		return []byte{}, nil
	}
	var raw []byte
	if c.scope != 0 {
		// A zero byte, which no key's varint starts with (a key holds the
		// ID's length, never 0), then the scope.
		raw = binary.LittleEndian.AppendUint32([]byte{0}, c.scope)
	}
	raw = binary.AppendVarint(raw, c.key)
	raw = append(raw, c.id...)
	out := make([]byte, base64.RawURLEncoding.EncodedLen(len(raw)))
	base64.RawURLEncoding.Encode(out, raw)
	return out, nil
}

// UnmarshalText decodes text made by MarshalText. Anything else gives an
// error wrapping [ErrInvalidCursor], and c is left unchanged.
func (c *Cursor) UnmarshalText(text []byte) error {
	if len(text) == 0 {
		*c = Cursor{}
		return nil
	}
	if len(text) > base64.RawURLEncoding.EncodedLen(5+binary.MaxVarintLen64+MaxIDLen) {
		return fmt.Errorf("%w: %d bytes is too long", ErrInvalidCursor, len(text))
	}
	raw, err := base64.RawURLEncoding.DecodeString(string(text))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidCursor, err)
	}
	var scope uint32
	if len(raw) > 0 && raw[0] == 0 {
		if len(raw) < 5 || binary.LittleEndian.Uint32(raw[1:]) == 0 {
			return fmt.Errorf("%w: bad scope", ErrInvalidCursor)
		}
		scope, raw = binary.LittleEndian.Uint32(raw[1:]), raw[5:]
	}
	key, n := binary.Varint(raw)
	if n <= 0 {
		return fmt.Errorf("%w: bad position", ErrInvalidCursor)
	}
	id := string(raw[n:])
	if !ValidID(id) || key&(1<<idLenBits-1) != int64(len(id)) {
		return fmt.Errorf("%w: bad id", ErrInvalidCursor)
	}
	*c = Cursor{key: key, id: id, scope: scope, set: true}
	return nil
}

// String returns the text form of c.
func (c Cursor) String() string {
	b, _ := c.MarshalText()
	return string(b)
}

// check returns nil if c is zero or belongs to the walk of scope.
func (c Cursor) check(scope uint32) error {
	if c.set && c.scope != scope {
		return fmt.Errorf("%w: the cursor of another walk (a room's, or the engine's own)", ErrInvalidCursor)
	}
	return nil
}
