package middleware_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"testing/synctest"
	"time"

	"github.com/onlinenow/presence"
	"github.com/onlinenow/presence/middleware"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestHold: a long-lived handler's user is online, and in the route's
// room, while the handler runs; two connections count once; the user goes
// offline one grace after the last ends.
func TestHold(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := presence.New(presence.WithOnlineWindow(time.Minute), presence.WithHoldGrace(5*time.Second))
		defer e.Close()
		sub := e.Subscribe(0)
		// Every channel exists before any handler runs: the handlers read
		// the map while this goroutine goes on.
		hangUp := map[string]chan struct{}{"1": make(chan struct{}), "2": make(chan struct{}), "3": make(chan struct{})}
		stream := func(w http.ResponseWriter, r *http.Request) { <-hangUp[r.URL.Query().Get("tab")] }
		mux := http.NewServeMux()
		mux.Handle("GET /live/{doc}", middleware.Hold(e, middleware.FromContext(ctxKey{}),
			middleware.WithRoom(func(r *http.Request) string { return "doc/" + r.PathValue("doc") }),
			middleware.WithSkip(func(r *http.Request) bool { return r.URL.Query().Has("skip") }),
		)(http.HandlerFunc(stream)))
		open := func(tab, user string) {
			go serve(mux, withUser(httptest.NewRequest("GET", "/live/7?tab="+tab, nil), user))
		}
		open("1", "alice")
		open("2", "alice")
		synctest.Wait()
		first := <-sub.Events()
		assert.Equal(t, presence.Event{Kind: presence.Online, ID: "alice", At: time.Now().UTC(), Seq: 1, Data: [][]byte{nil}}, first)
		assert.ElementsMatch(t, []string{"join doc/7", "update ", "update doc/7"}, pending(sub),
			"the second tab is an Update, globally and in the room")

		time.Sleep(10 * time.Minute) // held all along
		assert.Equal(t, 1, e.Online())
		assert.Equal(t, 1, e.Room("doc/7").Count(time.Second))
		assert.Empty(t, sub.Events())

		close(hangUp["1"])
		time.Sleep(time.Minute)
		assert.Equal(t, 1, e.Room("doc/7").Count(time.Second), "one tab still open")
		close(hangUp["2"])
		synctest.Wait()
		time.Sleep(4 * time.Second)
		assert.Equal(t, 1, e.Online(), "within the grace")
		time.Sleep(2 * time.Second)
		synctest.Wait()
		assert.Zero(t, e.Online())
		assert.Equal(t, []string{"update doc/7", "update ", "update doc/7", "update ", "leave doc/7", "offline "}, pending(sub),
			"an Update per tab closed, then Leave and Offline one grace after the last")

		close(hangUp["3"])
		serve(mux, withUser(httptest.NewRequest("GET", "/live/7?tab=3&skip", nil), "bob"))
		serve(mux, httptest.NewRequest("GET", "/live/7?tab=3", nil)) // no user
		assert.Empty(t, sub.Events(), "skipped and unidentified requests hold no one")
		_, known := e.Get("bob")
		assert.False(t, known)
	})
}

// pending returns the kinds and rooms of the events waiting in sub.
func pending(sub *presence.Subscription) []string {
	var out []string
	for {
		select {
		case ev := <-sub.Events():
			out = append(out, ev.Kind.String()+" "+ev.Room)
		default:
			return out
		}
	}
}

func TestHoldReleasesOnPanic(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := presence.New(presence.WithHoldGrace(time.Second))
		defer e.Close()
		h := middleware.Hold(e, middleware.FromContext(ctxKey{}))(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
			panic("handler broke")
		}))
		assert.Panics(t, func() { serve(h, withUser(httptest.NewRequest("GET", "/", nil), "alice")) })
		time.Sleep(2 * time.Second)
		synctest.Wait()
		ls, ok := e.LastSeen("alice")
		require.True(t, ok)
		assert.Equal(t, time.Now().Add(-2*time.Second).UTC(), ls, "released when the handler panicked")
	})
}

func TestHoldPanicsOnMistakes(t *testing.T) {
	id := middleware.FromContext(ctxKey{})
	e := presence.New()
	assert.PanicsWithValue(t, "middleware: Hold: nil Recorder", func() { middleware.Hold(nil, id) })
	assert.PanicsWithValue(t, "middleware: Hold: nil IdentityFunc: say who a request belongs to",
		func() { middleware.Hold(e, nil) })
	assert.Panics(t, func() { middleware.Hold(e, id, middleware.WithSkipPattern("(")) })
}

// unwrapWriter is a middleware's writer between Track and Hold.
type unwrapWriter struct{ http.ResponseWriter }

func (w unwrapWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// TestTrackAroundHoldKeepsTheGrace wraps a held route, and a plain one, in
// Track (around the mux, with a writer-wrapping middleware between): after
// the held connection closes, the user goes offline one grace later, not
// a window later, and the plain route is still recorded.
func TestTrackAroundHoldKeepsTheGrace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := presence.New(presence.WithOnlineWindow(5*time.Minute), presence.WithHoldGrace(2*time.Second))
		defer e.Close()
		user := middleware.FromContext(ctxKey{})
		mux := http.NewServeMux()
		mux.Handle("GET /live/{doc}", middleware.Hold(e, user,
			middleware.WithRoom(func(r *http.Request) string { return "doc/" + r.PathValue("doc") }),
		)(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { time.Sleep(time.Minute) })))
		mux.HandleFunc("GET /page", ok)
		wrap := func(h http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(unwrapWriter{w}, r) })
		}
		// Track's record comes a little after Hold's release, as it does
		// on a real clock; synctest's stands still between them.
		later := func() time.Time { return time.Now().Add(time.Millisecond) }
		h := middleware.Track(e, user, middleware.WithClock(later))(wrap(mux))

		serve(h, withUser(httptest.NewRequest("GET", "/live/7", nil), "alice"))
		time.Sleep(3 * time.Second)
		synctest.Wait()
		assert.Zero(t, e.Online(), "offline one grace after the held request ended")

		serve(h, withUser(httptest.NewRequest("GET", "/page", nil), "bob"))
		assert.Equal(t, 1, e.Online(), "a request not held is tracked")
	})
}
