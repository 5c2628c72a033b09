package middleware

import (
	"net/http"

	"github.com/onlinenow/presence"
)

// Hold returns middleware for long-lived handlers (Server-Sent Events,
// websockets, long polls): the user identify names is held in h while the
// handler runs, so it counts as online, and as seen now, for as long as
// the connection is open, and is released when the handler returns. With
// WithRoom it is held in that room too, which is named before the handler
// runs: wrap the handler the ServeMux routes to, so that r.Pattern and
// r.PathValue are set. Skip rules apply as in Track; the status and meta
// options have no effect. A Track around Hold (around the mux) records
// nothing for a request Hold held: its touch after the release would keep
// the user online a whole window instead of the backend's hold grace.
//
// Hold panics when built with a nil Recorder or IdentityFunc, or an
// invalid skip pattern.
func Hold(h presence.Recorder, identify IdentityFunc, opts ...Option) func(http.Handler) http.Handler {
	if h == nil {
		panic("middleware: Hold: nil Recorder")
	}
	t := &tracker{}
	t.build("Hold", identify, opts)
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
					release = h.HoldIn(room, id)
				} else {
					release = h.Hold(id)
				}
				defer release() // also when the handler panics
				markHeld(w)
			}
			next.ServeHTTP(w, r)
		})
	}
}
