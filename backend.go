package presence

import (
	"context"
	"fmt"
	"time"
)

// Recorder records activity. Its methods return at once, whatever the
// backend: none blocks on I/O (a remote backend buffers), none fails. An
// empty or too long ID, or an invalid room name, is ignored and counted in
// the backend's Stats (RejectedIDs, RejectedRooms); SetMeta's result only
// says whether the backend knew the user and took the meta.
//
// *Engine is a Recorder, and so is every [Backend].
type Recorder interface {
	// Touch records activity by id now, by the backend's clock.
	Touch(id string)
	// TouchAt records activity by id at at; a last-seen time never moves
	// backwards.
	TouchAt(id string, at time.Time)
	// TouchIn records activity by id in room now, and globally as Touch.
	TouchIn(room, id string)
	// TouchInAt records activity by id in room at at, and globally as
	// TouchAt.
	TouchInAt(room, id string, at time.Time)
	// SetMeta attaches meta (at most MaxMetaLen bytes) to a known user.
	SetMeta(id, meta string) bool
	// Hold makes id online, and seen now by every query, until release
	// (idempotent) is called. Holds of one user are counted once.
	Hold(id string) (release func())
	// HoldIn holds id in room, and globally as Hold does.
	HoldIn(room, id string) (release func())
	// Enter opens a connection of id in room ("": globally only) with
	// data (at most MaxDataLen bytes, copied), held as HoldIn holds until
	// the Conn is closed; its data is listed by the queries'
	// Activity.Data and carried by the events (see [Engine.Enter]). It
	// returns an error wrapping ErrInvalidID, ErrInvalidRoom or
	// ErrDataTooLarge, and never blocks.
	Enter(room, id string, data []byte) (Conn, error)
}

// Querier answers window queries over one set of users: all of a
// backend's, or the members of one room (then each at its time in the
// room).
//
// A window is always a time.Duration, measured back from now by the
// backend's clock: users seen within window of now are in it. A cursor is
// opaque text: "" starts a walk, and Page returns "" after its last page.
// Walking all pages yields every user that stays in the window exactly
// once, newest first. A cursor the Querier did not make (or one of another
// room's walk) is an error wrapping [ErrInvalidCursor].
type Querier interface {
	// Count returns how many users were seen within window.
	Count(ctx context.Context, window time.Duration) (int, error)
	// Page returns up to limit users seen within window (limit <= 0: all
	// the rest), newest first, after cursor, and the cursor of the next
	// page. Activity.Held is set for a user (or member) held now.
	Page(ctx context.Context, window time.Duration, cursor string, limit int) ([]Activity, string, error)
	// Get returns one user's activity, or false if unknown.
	Get(ctx context.Context, id string) (Activity, bool, error)

	// Online returns how many users are online now: held, or seen within
	// the backend's online window (WithOnlineWindow) and not gone by a
	// hold's grace.
	Online(ctx context.Context) (int, error)
	// OnlinePage returns up to limit users online now (limit <= 0: all the
	// rest), newest first, after cursor, and the cursor of the next page,
	// each with its connections' data (Activity.Data). Once the events
	// have caught up, it lists a user (a member) exactly between its
	// Online (Join) event and its Offline (Leave).
	OnlinePage(ctx context.Context, cursor string, limit int) ([]Activity, string, error)
}

// Backend is what a presence backend does: it records activity, answers
// queries globally and per room, ends memberships and users, publishes
// events and closes. The in-memory engine is one ([Engine.Backend]); the
// Redis store of package redispresence is another. Everything in this
// module above the storage (presencehttp, middleware, presenceprom) works
// with either, and package presencetest checks that a Backend keeps this
// contract.
//
// Methods that may do I/O take a context and return an error; recording
// ([Recorder]) never blocks. A Backend is safe for concurrent use.
type Backend interface {
	Recorder
	// Querier answers for all users.
	Querier

	// Room returns the Querier of one room's members, each at its last
	// time in the room. It does no I/O; an invalid name is an empty room.
	Room(name string) Querier
	// Rooms returns up to limit rooms (limit <= 0: all) with members seen
	// within window, busiest first, ties by name.
	Rooms(ctx context.Context, window time.Duration, limit int) ([]RoomCount, error)
	// RoomsOf returns the rooms id is in, most recently active first.
	RoomsOf(ctx context.Context, id string) ([]string, error)

	// Leave ends id's membership of room (a Leave event follows); id's
	// global last-seen time stays. It reports whether id was a member.
	Leave(ctx context.Context, room, id string) (bool, error)
	// Forget removes a user and its memberships (Offline and Leave events
	// follow). It reports whether the user was known.
	Forget(ctx context.Context, id string) (bool, error)

	// Subscribe returns a subscription to the backend's events from now
	// on, within scopes (their union; none: every event), with a channel
	// buffer of buffer events (<= 0: 1024). A user's Online comes before
	// its first Join, and its last Leave before its Offline. An event
	// costs O(subscriptions it matches), not O(all of them).
	Subscribe(ctx context.Context, buffer int, scopes ...Scope) (*Subscription, error)

	// Close ends the backend's background work, writing what it buffers
	// (a snapshot, a flush) within ctx. Later calls return nil.
	Close(ctx context.Context) error
}

// Backend returns the engine as a [Backend]: its own methods, with a
// context and an error where the contract has them. The engine's
// recording methods are called as they are, and its queries never fail.
func (e *Engine) Backend() Backend { return engineBackend{e} }

var _ Backend = engineBackend{}

// engineBackend adapts the engine to Backend. Recording is promoted from
// *Engine unchanged: the adapter adds only an interface call to a Touch.
type engineBackend struct{ *Engine }

func (b engineBackend) Count(_ context.Context, window time.Duration) (int, error) {
	return b.Engine.Count(window), nil
}

func (b engineBackend) Page(_ context.Context, window time.Duration, cursor string, limit int) ([]Activity, string, error) {
	return page(b.Engine, b.now().Add(-window), cursor, limit)
}

func (b engineBackend) Get(_ context.Context, id string) (Activity, bool, error) {
	a, ok := b.Engine.Get(id)
	return a, ok, nil
}

func (b engineBackend) Online(context.Context) (int, error) { return b.Engine.Online(), nil }

func (b engineBackend) OnlinePage(_ context.Context, cursor string, limit int) ([]Activity, string, error) {
	return onlinePage(b.Engine, cursor, limit)
}

func (b engineBackend) Room(name string) Querier { return roomBackend{b.Engine.Room(name)} }

func (b engineBackend) Rooms(_ context.Context, window time.Duration, limit int) ([]RoomCount, error) {
	return b.Engine.Rooms(window, limit), nil
}

func (b engineBackend) RoomsOf(_ context.Context, id string) ([]string, error) {
	return b.Engine.RoomsOf(id), nil
}

func (b engineBackend) Leave(_ context.Context, room, id string) (bool, error) {
	return b.Engine.Leave(room, id), nil
}

func (b engineBackend) Forget(_ context.Context, id string) (bool, error) {
	return b.Engine.Forget(id), nil
}

func (b engineBackend) Subscribe(_ context.Context, buffer int, scopes ...Scope) (*Subscription, error) {
	return b.Engine.Subscribe(buffer, scopes...), nil
}

func (b engineBackend) Close(context.Context) error { return b.Engine.Close() }

// roomBackend adapts a Room to Querier.
type roomBackend struct{ r Room }

func (q roomBackend) Count(_ context.Context, window time.Duration) (int, error) {
	return q.r.Count(window), nil
}

func (q roomBackend) Page(_ context.Context, window time.Duration, cursor string, limit int) ([]Activity, string, error) {
	return page(q.r, q.r.e.now().Add(-window), cursor, limit)
}

func (q roomBackend) Get(_ context.Context, id string) (Activity, bool, error) {
	a, ok := q.r.Get(id)
	return a, ok, nil
}

func (q roomBackend) Online(context.Context) (int, error) { return q.r.Online(), nil }

func (q roomBackend) OnlinePage(_ context.Context, cursor string, limit int) ([]Activity, string, error) {
	return onlinePage(q.r, cursor, limit)
}

// walker is what the adapters page: the engine or a room.
type walker interface {
	Page(time.Time, Cursor, int) ([]Activity, Cursor)
	OnlinePage(Cursor, int) ([]Activity, Cursor)
	CheckCursor(Cursor) error
}

// page reads one page of v's walk from the cursor's text.
func page(v walker, since time.Time, cursor string, limit int) ([]Activity, string, error) {
	return pageOf(v, cursor, func(c Cursor) ([]Activity, Cursor) { return v.Page(since, c, limit) })
}

// onlinePage reads one page of v's walk of who is online now.
func onlinePage(v walker, cursor string, limit int) ([]Activity, string, error) {
	return pageOf(v, cursor, func(c Cursor) ([]Activity, Cursor) { return v.OnlinePage(c, limit) })
}

func pageOf(v walker, cursor string, read func(Cursor) ([]Activity, Cursor)) ([]Activity, string, error) {
	var c Cursor
	err := c.UnmarshalText([]byte(cursor))
	if err == nil {
		err = v.CheckCursor(c)
	}
	if err != nil {
		return nil, "", fmt.Errorf("page: %w", err)
	}
	a, next := read(c)
	return a, next.String(), nil
}
