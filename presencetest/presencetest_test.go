package presencetest_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/onlinenow/presence"
	"github.com/onlinenow/presence/presencetest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestEngine runs the contract against the in-memory engine, at the default
// resolution, at a coarse one with few shards (more ties per shard), and at
// a fine one with many.
func TestEngine(t *testing.T) {
	for name, opts := range map[string][]presence.Option{
		"default":      nil,
		"2shards":      {presence.WithShards(2)},
		"1ms-64shards": {presence.WithResolution(time.Millisecond), presence.WithShards(64)},
	} {
		t.Run(name, func(t *testing.T) {
			presencetest.Test(t, func(t *testing.T, now func() time.Time) presencetest.Backend {
				e := presence.New(append(opts, presence.WithClock(now))...)
				t.Cleanup(func() { e.Close() })
				return presencetest.Backend{Backend: e.Backend()}
			})
		})
	}
}

// broken wraps the engine's Backend to break one rule of the contract.
type broken struct {
	presence.Backend
	page      func(q presence.Querier, w time.Duration, cursor string, limit int) ([]presence.Activity, string, error)
	count     func(q presence.Querier, w time.Duration) (int, error)
	room      func(name string) presence.Querier
	rooms     func(w time.Duration, limit int) ([]presence.RoomCount, error)
	leave     func(room, id string) (bool, error)
	online    func() (int, error)
	touchAt   func(id string, at time.Time)
	subscribe func(buffer int, scopes []presence.Scope) (*presence.Subscription, error)
}

func (b broken) Page(ctx context.Context, w time.Duration, cursor string, limit int) ([]presence.Activity, string, error) {
	if b.page == nil {
		return b.Backend.Page(ctx, w, cursor, limit)
	}
	return b.page(b.Backend, w, cursor, limit)
}

func (b broken) Count(ctx context.Context, w time.Duration) (int, error) {
	if b.count == nil {
		return b.Backend.Count(ctx, w)
	}
	return b.count(b.Backend, w)
}

func (b broken) Room(name string) presence.Querier {
	if b.room == nil {
		return b.Backend.Room(name)
	}
	return b.room(name)
}

func (b broken) Rooms(ctx context.Context, w time.Duration, limit int) ([]presence.RoomCount, error) {
	if b.rooms == nil {
		return b.Backend.Rooms(ctx, w, limit)
	}
	return b.rooms(w, limit)
}

func (b broken) Leave(ctx context.Context, room, id string) (bool, error) {
	if b.leave == nil {
		return b.Backend.Leave(ctx, room, id)
	}
	return b.leave(room, id)
}

func (b broken) Online(ctx context.Context) (int, error) {
	if b.online == nil {
		return b.Backend.Online(ctx)
	}
	return b.online()
}

func (b broken) TouchAt(id string, at time.Time) {
	if b.touchAt == nil {
		b.Backend.TouchAt(id, at)
		return
	}
	b.touchAt(id, at)
}

func (b broken) Subscribe(ctx context.Context, buffer int, scopes ...presence.Scope) (*presence.Subscription, error) {
	if b.subscribe == nil {
		return b.Backend.Subscribe(ctx, buffer, scopes...)
	}
	return b.subscribe(buffer, scopes)
}

// roomPages wraps a room's Querier to change its pages.
type roomPages struct {
	presence.Querier
	page func(q presence.Querier, w time.Duration, cursor string, limit int) ([]presence.Activity, string, error)
}

func (r roomPages) Page(ctx context.Context, w time.Duration, cursor string, limit int) ([]presence.Activity, string, error) {
	return r.page(r.Querier, w, cursor, limit)
}

// relay subscribes to the engine with a large buffer and republishes what
// it gets through a hub of its own, changed by edit: a backend whose
// events are wrong.
func relay(e *presence.Engine, buffer int, scopes []presence.Scope, edit func(ev presence.Event, publish func(presence.Event))) *presence.Subscription {
	in := e.Subscribe(1 << 16)
	h := new(presence.Hub)
	out := h.Subscribe(buffer, scopes...)
	go func() {
		defer h.Close()
		for ev := range in.Events() {
			edit(ev, h.Publish)
		}
	}()
	return out
}

// usersOnlineOnly is a wrong reading of scopes: a user's scope taken to
// be its Online and Offline only, not its Joins and Leaves.
func usersOnlineOnly(scopes []presence.Scope, ev presence.Event) bool {
	for _, sc := range scopes {
		if (ev.Room != "" && slices.Contains(sc.Rooms, ev.Room)) || (ev.Room == "" && slices.Contains(sc.Users, ev.ID)) {
			return true
		}
	}
	return false
}

// TestCatchesBrokenBackends checks that the suite fails each of a set of
// deliberately wrong backends, in the check that owns the rule it breaks.
func TestCatchesBrokenBackends(t *testing.T) {
	ctx := context.Background()
	var last presence.Activity // repeats: the last user of the page before
	for _, tc := range []struct {
		name  string
		check string // the check that has to fail
		wrap  func(e *presence.Engine) broken
	}{
		{"a page that repeats the last item of the page before", "PagingTies", func(e *presence.Engine) broken {
			return broken{page: func(q presence.Querier, w time.Duration, cursor string, limit int) ([]presence.Activity, string, error) {
				page, next, err := q.Page(ctx, w, cursor, limit)
				if cursor != "" && len(page) > 0 {
					page = append([]presence.Activity{last}, page[:len(page)-1]...)
				}
				if len(page) > 0 {
					last = page[len(page)-1]
				}
				return page, next, err
			}}
		}},
		{"a count off by one second at the window edge", "CountsAtWindowEdges", func(e *presence.Engine) broken {
			return broken{count: func(q presence.Querier, w time.Duration) (int, error) { return q.Count(ctx, w+time.Second) }}
		}},
		{"a bad cursor read as the start", "BadCursors", func(e *presence.Engine) broken {
			return broken{page: func(q presence.Querier, w time.Duration, cursor string, limit int) ([]presence.Activity, string, error) {
				page, next, err := q.Page(ctx, w, cursor, limit)
				if errors.Is(err, presence.ErrInvalidCursor) {
					return q.Page(ctx, w, "", limit)
				}
				return page, next, err
			}}
		}},
		{"an older time that wins", "MaxMerge", func(e *presence.Engine) broken {
			return broken{touchAt: func(id string, at time.Time) { e.Forget(id); e.TouchAt(id, at) }}
		}},
		{"limit <= 0 read as 10", "Limits", func(e *presence.Engine) broken {
			return broken{page: func(q presence.Querier, w time.Duration, cursor string, limit int) ([]presence.Activity, string, error) {
				if limit <= 0 {
					limit = 10
				}
				return q.Page(ctx, w, cursor, limit)
			}}
		}},
		{"pages oldest first", "NewestFirst", func(e *presence.Engine) broken {
			return broken{page: func(q presence.Querier, w time.Duration, cursor string, limit int) ([]presence.Activity, string, error) {
				page, next, err := q.Page(ctx, w, cursor, limit)
				slices.Reverse(page)
				return page, next, err
			}}
		}},
		{"Join before Online", "Events", func(e *presence.Engine) broken {
			return broken{subscribe: func(buffer int, scopes []presence.Scope) (*presence.Subscription, error) {
				var held *presence.Event
				return relay(e, buffer, scopes, func(ev presence.Event, publish func(presence.Event)) {
					switch {
					case ev.Kind == presence.Online && ev.ID == "u":
						held = &ev
					case ev.Kind == presence.Join && held != nil:
						publish(ev)
						publish(*held)
						held = nil
					default:
						publish(ev)
					}
				}), nil
			}}
		}},
		{"a scoped subscription sent every event", "ScopedEvents", func(e *presence.Engine) broken {
			return broken{subscribe: func(buffer int, _ []presence.Scope) (*presence.Subscription, error) {
				return e.Subscribe(buffer), nil
			}}
		}},
		{"a scoped subscription missing its user's events in rooms", "ScopedEvents", func(e *presence.Engine) broken {
			return broken{subscribe: func(buffer int, scopes []presence.Scope) (*presence.Subscription, error) {
				return relay(e, buffer, nil, func(ev presence.Event, publish func(presence.Event)) {
					if usersOnlineOnly(scopes, ev) {
						publish(ev)
					}
				}), nil
			}}
		}},
		{"an event sent twice", "Events", func(e *presence.Engine) broken {
			return broken{subscribe: func(buffer int, scopes []presence.Scope) (*presence.Subscription, error) {
				return relay(e, buffer, scopes, func(ev presence.Event, publish func(presence.Event)) {
					publish(ev)
					if ev.Kind == presence.Leave {
						publish(ev)
					}
				}), nil
			}}
		}},
		{"Held false in a room's page", "Holds", func(e *presence.Engine) broken {
			return broken{room: func(name string) presence.Querier {
				return roomPages{e.Backend().Room(name), func(q presence.Querier, w time.Duration, cursor string, limit int) ([]presence.Activity, string, error) {
					page, next, err := q.Page(ctx, w, cursor, limit)
					for i := range page {
						page[i].Held = false
					}
					return page, next, err
				}}
			}}
		}},
		{"a hold counted twice", "Holds", func(e *presence.Engine) broken {
			return broken{online: func() (int, error) { return e.Online() + 1, nil }}
		}},
		{"a member still listed after its Leave", "Leave", func(e *presence.Engine) broken {
			left := map[string]bool{}
			return broken{leave: func(room, id string) (bool, error) {
				if left[room+"\x00"+id] {
					return false, nil
				}
				_, ok := e.Room(room).Get(id)
				left[room+"\x00"+id] = true
				return ok, nil
			}}
		}},
		{"busiest rooms ordered by name", "Rooms", func(e *presence.Engine) broken {
			return broken{rooms: func(w time.Duration, limit int) ([]presence.RoomCount, error) {
				rs := e.Rooms(w, 0)
				slices.SortFunc(rs, func(a, b presence.RoomCount) int { return strings.Compare(a.Room, b.Room) })
				if limit > 0 && len(rs) > limit {
					rs = rs[:limit]
				}
				return rs, nil
			}}
		}},
		{"another room's cursor accepted", "RoomCursors", func(e *presence.Engine) broken {
			return broken{room: func(name string) presence.Querier {
				return roomPages{e.Backend().Room(name), func(q presence.Querier, w time.Duration, cursor string, limit int) ([]presence.Activity, string, error) {
					page, next, err := q.Page(ctx, w, cursor, limit)
					if errors.Is(err, presence.ErrInvalidCursor) {
						return page, "", nil
					}
					return page, next, err
				}}
			}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := presencetest.Check(func(now func() time.Time) (presencetest.Backend, error) {
				e := presence.New(presence.WithClock(now))
				b := tc.wrap(e)
				b.Backend = e.Backend()
				return presencetest.Backend{Backend: b}, nil
			})
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.check+":")
			t.Log(err)
		})
	}
	// And the engine itself passes.
	require.NoError(t, presencetest.Check(func(now func() time.Time) (presencetest.Backend, error) {
		return presencetest.Backend{Backend: presence.New(presence.WithClock(now)).Backend()}, nil
	}))
}
