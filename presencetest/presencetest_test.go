package presencetest_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/onlinenow/presence"
	"github.com/onlinenow/presence/middleware"
	"github.com/onlinenow/presence/presencehttp"
	"github.com/onlinenow/presence/presencetest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var (
	_ middleware.MetaRecorder = (*presence.Engine)(nil)
	_ presencehttp.Querier    = presencehttp.FromEngine(nil)
)

// TestEngine runs the contract against the in-memory engine, at the default
// resolution and at a coarse one with few shards (more ties per shard).
func TestEngine(t *testing.T) {
	for name, opts := range map[string][]presence.Option{
		"default":      nil,
		"1s-2shards":   {presence.WithShards(2)},
		"1ms-64shards": {presence.WithResolution(time.Millisecond), presence.WithShards(64)},
	} {
		t.Run(name, func(t *testing.T) {
			presencetest.Test(t, func(t *testing.T) presencetest.Backend {
				e := presence.New(opts...)
				return presencetest.Backend{Querier: presencehttp.FromEngine(e), Recorder: e}
			})
		})
	}
}

// TestRoom runs the contract against a room's view of the engine, touched
// through TouchInAt; other rooms and users outside every room are noise it
// must not see.
func TestRoom(t *testing.T) {
	presencetest.Test(t, func(t *testing.T) presencetest.Backend {
		e := presence.New(presence.WithShards(4))
		e.TouchIn("other", "known")
		e.Touch("outside")
		return presencetest.Backend{Querier: presencehttp.FromRoom(e.Room("r")), Recorder: roomRecorder{e, "r"}}
	})
}

// roomRecorder records into one room.
type roomRecorder struct {
	e    *presence.Engine
	room string
}

func (r roomRecorder) TouchAt(id string, at time.Time) { r.e.TouchInAt(r.room, id, at) }
func (r roomRecorder) SetMeta(id, meta string) bool    { return r.e.SetMeta(id, meta) }

// broken wraps the engine's Querier to break one rule of the contract.
type broken struct {
	presencehttp.Querier
	page  func(q presencehttp.Querier, t time.Time, cursor string, limit int) ([]presence.Activity, string, error)
	count func(q presencehttp.Querier, t time.Time) (int, error)
}

func (b broken) Page(ctx context.Context, t time.Time, cursor string, limit int) ([]presence.Activity, string, error) {
	if b.page == nil {
		return b.Querier.Page(ctx, t, cursor, limit)
	}
	return b.page(b.Querier, t, cursor, limit)
}

func (b broken) CountSince(ctx context.Context, t time.Time) (int, error) {
	if b.count == nil {
		return b.Querier.CountSince(ctx, t)
	}
	return b.count(b.Querier, t)
}

// olderWins forgets a user before each touch, so that the last time wins,
// not the newest.
type olderWins struct{ e *presence.Engine }

func (o olderWins) TouchAt(id string, at time.Time) {
	o.e.Forget(id)
	o.e.TouchAt(id, at)
}

// TestCatchesBrokenBackends checks that the suite fails each of a set of
// deliberately wrong backends, in the check that owns the rule it breaks.
func TestCatchesBrokenBackends(t *testing.T) {
	ctx := context.Background()
	var last presence.Activity // repeats: the last user of the page before
	for _, tc := range []struct {
		name  string
		check string // the check that has to fail
		wrap  func(e *presence.Engine) presencetest.Backend
	}{
		{"a page that repeats the last item of the page before", "PagingTies", func(e *presence.Engine) presencetest.Backend {
			return presencetest.Backend{Recorder: e, Querier: broken{Querier: presencehttp.FromEngine(e),
				page: func(q presencehttp.Querier, t time.Time, cursor string, limit int) ([]presence.Activity, string, error) {
					page, next, err := q.Page(ctx, t, cursor, limit)
					if cursor != "" && len(page) > 0 {
						page = append([]presence.Activity{last}, page[:len(page)-1]...)
					}
					if len(page) > 0 {
						last = page[len(page)-1]
					}
					return page, next, err
				}}}
		}},
		{"a count off by one slot at the window edge", "CountsAtWindowEdges", func(e *presence.Engine) presencetest.Backend {
			return presencetest.Backend{Recorder: e, Querier: broken{Querier: presencehttp.FromEngine(e),
				count: func(q presencehttp.Querier, t time.Time) (int, error) {
					return q.CountSince(ctx, t.Add(-time.Second))
				}}}
		}},
		{"a bad cursor read as the start", "BadCursors", func(e *presence.Engine) presencetest.Backend {
			return presencetest.Backend{Recorder: e, Querier: broken{Querier: presencehttp.FromEngine(e),
				page: func(q presencehttp.Querier, t time.Time, cursor string, limit int) ([]presence.Activity, string, error) {
					page, next, err := q.Page(ctx, t, cursor, limit)
					if errors.Is(err, presencehttp.ErrBadCursor) {
						return q.Page(ctx, t, "", limit)
					}
					return page, next, err
				}}}
		}},
		{"an older time that wins", "MaxMerge", func(e *presence.Engine) presencetest.Backend {
			return presencetest.Backend{Recorder: olderWins{e}, Querier: presencehttp.FromEngine(e)}
		}},
		{"limit <= 0 read as 10", "Limits", func(e *presence.Engine) presencetest.Backend {
			return presencetest.Backend{Recorder: e, Querier: broken{Querier: presencehttp.FromEngine(e),
				page: func(q presencehttp.Querier, t time.Time, cursor string, limit int) ([]presence.Activity, string, error) {
					if limit <= 0 {
						limit = 10
					}
					return q.Page(ctx, t, cursor, limit)
				}}}
		}},
		{"pages oldest first", "NewestFirst", func(e *presence.Engine) presencetest.Backend {
			return presencetest.Backend{Recorder: e, Querier: broken{Querier: presencehttp.FromEngine(e),
				page: func(q presencehttp.Querier, t time.Time, cursor string, limit int) ([]presence.Activity, string, error) {
					page, next, err := q.Page(ctx, t, cursor, limit)
					for i, j := 0, len(page)-1; i < j; i, j = i+1, j-1 {
						page[i], page[j] = page[j], page[i]
					}
					return page, next, err
				}}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := presencetest.Check(func() (presencetest.Backend, error) {
				return tc.wrap(presence.New()), nil
			})
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.check+":")
			t.Log(err)
		})
	}
	// And the engine itself passes.
	require.NoError(t, presencetest.Check(func() (presencetest.Backend, error) {
		e := presence.New()
		return presencetest.Backend{Querier: presencehttp.FromEngine(e), Recorder: e}, nil
	}))
}
