package presencehttp

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/onlinenow/presence"
)

// Querier is what the handler reads. Its methods take a context and return
// an error, because a remote backend can fail; [FromEngine] adapts a
// *presence.Engine, and the Redis backend implements it directly. It is
// safe for concurrent use in every backend of this module.
type Querier interface {
	// CountSince returns how many users were seen at t or later.
	CountSince(ctx context.Context, t time.Time) (int, error)
	// Page returns up to limit users seen since t, newest first, after the
	// opaque cursor ("" for the first page), and the cursor of the next
	// page ("" after the last); limit <= 0 returns all the rest. A cursor
	// the Querier did not make is an error wrapping ErrBadCursor. Package
	// presencetest checks this contract.
	Page(ctx context.Context, t time.Time, cursor string, limit int) ([]presence.Activity, string, error)
	// Get returns one user's activity, or false if unknown.
	Get(ctx context.Context, id string) (presence.Activity, bool, error)
}

// ErrBadCursor is wrapped by a Querier's Page for a cursor it cannot use.
var ErrBadCursor = errors.New("presencehttp: bad cursor")

// RoomQuerier is a Querier that also knows rooms. For one, Handler serves
// /api/rooms and the room parameter of /api/counts, /api/users and
// /api/user. FromEngine's Querier is one.
type RoomQuerier interface {
	Querier
	// Rooms returns up to limit rooms with members seen within window,
	// busiest first (ties by name).
	Rooms(ctx context.Context, window time.Duration, limit int) ([]presence.RoomCount, error)
	// Room returns the Querier of one room's members, each last seen at
	// its time in the room; a cursor of another room is a bad cursor.
	Room(name string) Querier
}

// FromEngine adapts an in-memory engine to Querier (a RoomQuerier).
func FromEngine(e *presence.Engine) Querier { return engineRooms{engineQuerier[*presence.Engine]{e}} }

type engineRooms struct {
	engineQuerier[*presence.Engine]
}

func (q engineRooms) Rooms(_ context.Context, window time.Duration, limit int) ([]presence.RoomCount, error) {
	return q.v.Rooms(window, limit), nil
}

func (q engineRooms) Room(name string) Querier { return FromRoom(q.v.Room(name)) }

// FromRoom adapts one room of an in-memory engine to Querier: its members,
// each last seen at its time in the room. A cursor of another room is a bad
// cursor.
func FromRoom(r presence.Room) Querier { return engineQuerier[presence.Room]{r} }

// engineQuerier adapts the engine, or a room's view of it.
type engineQuerier[V interface {
	CountSince(time.Time) int
	Page(time.Time, presence.Cursor, int) ([]presence.Activity, presence.Cursor)
	CheckCursor(presence.Cursor) error
	Get(string) (presence.Activity, bool)
}] struct{ v V }

func (q engineQuerier[V]) CountSince(_ context.Context, t time.Time) (int, error) {
	return q.v.CountSince(t), nil
}

func (q engineQuerier[V]) Page(_ context.Context, t time.Time, cursor string, limit int) ([]presence.Activity, string, error) {
	var c presence.Cursor
	err := c.UnmarshalText([]byte(cursor))
	if err == nil {
		err = q.v.CheckCursor(c)
	}
	if err != nil {
		return nil, "", fmt.Errorf("%w: %w", ErrBadCursor, err)
	}
	page, next := q.v.Page(t, c, limit)
	return page, next.String(), nil
}

func (q engineQuerier[V]) Get(_ context.Context, id string) (presence.Activity, bool, error) {
	a, ok := q.v.Get(id)
	return a, ok, nil
}
