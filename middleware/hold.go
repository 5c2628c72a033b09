package middleware

import "net/http"

// Holder is what Hold holds users in: Hold keeps id online until release
// is called. *presence.Engine satisfies it.
type Holder interface {
	Hold(id string) (release func())
}

// RoomHolder is a Holder that also holds users in rooms: HoldIn keeps id
// in room, and online, until release. *presence.Engine satisfies it. Hold
// uses it with WithRoom.
type RoomHolder interface {
	Holder
	HoldIn(room, id string) (release func())
}

// Hold returns middleware for long-lived handlers (Server-Sent Events,
// websockets, long polls): the user identify names is held in h while the
// handler runs, so it counts as online, and as seen now, for as long as
// the connection is open, and is released when the handler returns. With
// WithRoom it is held in that room too, which is named before the handler
// runs: wrap the handler the ServeMux routes to, so that r.Pattern and
// r.PathValue are set. Skip rules apply as in Track; the status and meta
// options have no effect.
//
// Hold panics when built with a nil Holder or IdentityFunc, an invalid
// skip pattern, or WithRoom and a Holder that is not a RoomHolder.
func Hold(h Holder, identify IdentityFunc, opts ...Option) func(http.Handler) http.Handler {
	if h == nil {
		panic("middleware: Hold: nil Holder")
	}
	t := &tracker{}
	t.build("Hold", identify, opts)
	var rooms RoomHolder
	if t.room != nil {
		rh, ok := h.(RoomHolder)
		if !ok {
			panic("middleware: Hold: WithRoom needs a RoomHolder")
		}
		rooms = rh
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if t.skip(r) {
				t.counters.inc(skipped)
				next.ServeHTTP(w, r)
				return
			}
			if id, ok := t.identify(r); !ok || id == "" {
				t.counters.inc(anonymous)
			} else {
				if c := t.counters; c != nil {
					c.inc(recorded)
					c.inc(held)
					c.open.Add(1)
					defer c.open.Add(-1)
				}
				var release func()
				if room := t.roomOf(r); room != "" {
					release = rooms.HoldIn(room, id)
				} else {
					release = h.Hold(id)
				}
				defer release() // also when the handler panics
			}
			next.ServeHTTP(w, r)
		})
	}
}
