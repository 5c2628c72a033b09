package presence

import "errors"

// Sentinel errors. Functions that return them wrap them with detail using %w,
// so test for them with [errors.Is].
var (
	// ErrInvalidCursor is returned by [Cursor.UnmarshalText] when the text
	// is not a cursor this package produced.
	ErrInvalidCursor = errors.New("presence: invalid cursor")

	// ErrCorruptSnapshot is returned when a snapshot is empty, truncated,
	// fails a checksum, declares an impossible length or count, or is not a
	// snapshot at all. The engine is left unchanged.
	ErrCorruptSnapshot = errors.New("presence: corrupt snapshot")

	// ErrSnapshotVersion is returned when a snapshot was written in a format
	// version (or with flags) this build cannot read. The engine is left
	// unchanged.
	ErrSnapshotVersion = errors.New("presence: unsupported snapshot version")

	// ErrNotRegular is returned by [Open] and [Engine.LoadFile] when the
	// snapshot's path names a directory, a FIFO, a device or anything else
	// but a regular file. Nothing is read from it.
	ErrNotRegular = errors.New("presence: snapshot path is not a regular file")

	// ErrNoEvents is returned by a [Backend]'s Subscribe when the backend
	// was made without events (the Redis store without WithEvents).
	ErrNoEvents = errors.New("presence: this backend was made without events")

	// ErrInvalidID is returned by Enter for an empty or too long user ID
	// (see [ValidID]).
	ErrInvalidID = errors.New("presence: invalid user ID")

	// ErrInvalidRoom is returned by Enter for a room name that is not valid
	// (see [ValidRoom]).
	ErrInvalidRoom = errors.New("presence: invalid room name")

	// ErrDataTooLarge is returned by Enter and [Conn].Update for data of
	// more than [MaxDataLen] bytes.
	ErrDataTooLarge = errors.New("presence: connection data too large")

	// ErrClosed is returned by [Conn].Update once the connection is closed,
	// or its user forgotten or its membership ended.
	ErrClosed = errors.New("presence: connection closed")
)
