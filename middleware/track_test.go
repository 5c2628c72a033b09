package middleware_test

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/onlinenow/presence"
	"github.com/onlinenow/presence/middleware"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type ctxKey struct{}

var t0 = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func clock() time.Time { return t0 }

// withUser is what an authentication middleware does.
func withUser(r *http.Request, v any) *http.Request {
	return r.WithContext(contextWith(r, v))
}

func serve(h http.Handler, r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func ok(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }

type stringer struct{ id int }

type userID int64

func (s stringer) String() string { return fmt.Sprint("user#", s.id) }

func TestIdentityHelpers(t *testing.T) {
	tests := []struct {
		name     string
		identify middleware.IdentityFunc
		prepare  func(r *http.Request) *http.Request
		want     string
		ok       bool
	}{
		{"context string", middleware.FromContext(ctxKey{}), func(r *http.Request) *http.Request { return withUser(r, "alice") }, "alice", true},
		{"context stringer", middleware.FromContext(ctxKey{}), func(r *http.Request) *http.Request { return withUser(r, stringer{7}) }, "user#7", true},
		{"context int", middleware.FromContext(ctxKey{}), func(r *http.Request) *http.Request { return withUser(r, 4711) }, "4711", true},
		{"context int64", middleware.FromContext(ctxKey{}), func(r *http.Request) *http.Request { return withUser(r, int64(-3)) }, "-3", true},
		{"context uint8", middleware.FromContext(ctxKey{}), func(r *http.Request) *http.Request { return withUser(r, uint8(200)) }, "200", true},
		{"context named int", middleware.FromContext(ctxKey{}), func(r *http.Request) *http.Request { return withUser(r, userID(42)) }, "42", true},
		{"context float refused", middleware.FromContext(ctxKey{}), func(r *http.Request) *http.Request { return withUser(r, 1.5) }, "", false},
		{"context empty", middleware.FromContext(ctxKey{}), func(r *http.Request) *http.Request { return withUser(r, "") }, "", false},
		{"context missing", middleware.FromContext(ctxKey{}), func(r *http.Request) *http.Request { return r }, "", false},
		{"header", middleware.FromHeader("x-user"), func(r *http.Request) *http.Request { r.Header.Set("X-User", "bob"); return r }, "bob", true},
		{"header missing", middleware.FromHeader("x-user"), func(r *http.Request) *http.Request { return r }, "", false},
		{"cookie", middleware.FromCookie("uid"), func(r *http.Request) *http.Request {
			r.AddCookie(&http.Cookie{Name: "uid", Value: "carol"})
			return r
		}, "carol", true},
		{"cookie missing", middleware.FromCookie("uid"), func(r *http.Request) *http.Request { return r }, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.prepare(httptest.NewRequest("GET", "/", nil))
			id, ok := tt.identify(r)
			assert.Equal(t, tt.ok, ok)
			assert.Equal(t, tt.want, id)
		})
	}
}

func TestSkipRules(t *testing.T) {
	opts := []middleware.Option{
		middleware.WithSkipPrefix("/static/", "/healthz"),
		middleware.WithSkipPattern(`^/api/v[0-9]+/ping$`, `\.(css|js)$`),
		middleware.WithSkipMethod("options"),
		middleware.WithSkip(func(r *http.Request) bool { return r.Header.Get("X-Bot") != "" }),
		middleware.WithClock(clock),
	}
	tests := []struct {
		method, path string
		bot          bool
		recorded     bool
	}{
		{"GET", "/", false, true},
		{"GET", "/static/app.png", false, false},
		{"GET", "/healthz", false, false},
		{"GET", "/api/v2/ping", false, false},
		{"GET", "/api/v2/ping/x", false, true},
		{"GET", "/theme.css", false, false},
		{"OPTIONS", "/", false, false},
		{"POST", "/", false, true},
		{"GET", "/", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.method+tt.path, func(t *testing.T) {
			e := presence.New()
			h := middleware.Track(e, middleware.FromContext(ctxKey{}), opts...)(http.HandlerFunc(ok))
			r := withUser(httptest.NewRequest(tt.method, tt.path, nil), "u")
			if tt.bot {
				r.Header.Set("X-Bot", "1")
			}
			serve(h, r)
			_, got := e.Get("u")
			assert.Equal(t, tt.recorded, got)
		})
	}
}

func TestStatusFilter(t *testing.T) {
	status := func(code int) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(code) }
	}
	tests := []struct {
		name     string
		handler  http.HandlerFunc
		opts     []middleware.Option
		recorded bool
	}{
		{"200", status(200), nil, true},
		{"302", status(302), nil, true},
		{"404", status(404), nil, true},
		{"500", status(500), nil, false},
		{"503", status(503), nil, false},
		{"writes nothing", func(http.ResponseWriter, *http.Request) {}, nil, true},
		{"body only", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("hi")) }, nil, true},
		{"early hints then 500", func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusEarlyHints)
			w.WriteHeader(500)
		}, nil, false},
		{"flushed, then 500", func(w http.ResponseWriter, _ *http.Request) {
			w.(http.Flusher).Flush() // sends 200: the 500 comes too late
			w.WriteHeader(500)
		}, nil, true},
		{"999, every class", status(999), []middleware.Option{middleware.WithStatusClasses(1, 2, 3, 4, 5)}, false},
		{"only 2xx: 404", status(404), []middleware.Option{middleware.WithStatusClasses(2)}, false},
		{"only 2xx: 204", status(204), []middleware.Option{middleware.WithStatusClasses(2)}, true},
		{"5xx too", status(500), []middleware.Option{middleware.WithStatusClasses(2, 3, 4, 5)}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := presence.New()
			h := middleware.Track(e, middleware.FromContext(ctxKey{}), tt.opts...)(tt.handler)
			serve(h, withUser(httptest.NewRequest("GET", "/", nil), "u"))
			_, got := e.Get("u")
			assert.Equal(t, tt.recorded, got)
		})
	}
}

func TestRecordsAfterHandler(t *testing.T) {
	e := presence.New()
	var during bool
	h := middleware.Track(e, middleware.FromContext(ctxKey{}), middleware.WithClock(clock))(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, during = e.Get("u")
			w.Write([]byte("body"))
		}))
	w := serve(h, withUser(httptest.NewRequest("GET", "/", nil), "u"))
	assert.False(t, during, "not recorded before the handler ran")
	ls, ok := e.LastSeen("u")
	require.True(t, ok)
	assert.True(t, ls.Equal(t0))
	assert.Equal(t, "body", w.Body.String(), "the response is the handler's alone")
	assert.Empty(t, w.Header().Values("Set-Cookie"))
}

// TestRoomRecording: WithRoom records into the room it names, after the
// handler ran (RoutePattern reads what the mux set), and globally; a
// request without a room is recorded globally only.
func TestRoomRecording(t *testing.T) {
	e := presence.New(presence.WithClock(clock))
	mux := http.NewServeMux()
	mux.HandleFunc("GET /tickets/{id}", ok)
	mux.HandleFunc("GET /about", ok)
	track := middleware.Track(e, middleware.FromContext(ctxKey{}), middleware.WithClock(clock),
		middleware.WithRoom(middleware.RoutePattern))
	h := track(mux)
	serve(h, withUser(httptest.NewRequest("GET", "/tickets/1", nil), "alice"))
	serve(h, withUser(httptest.NewRequest("GET", "/tickets/2", nil), "bob"))
	serve(h, withUser(httptest.NewRequest("GET", "/about", nil), "bob"))
	serve(h, withUser(httptest.NewRequest("GET", "/nowhere", nil), "carol")) // 404: no pattern

	assert.ElementsMatch(t, []string{"bob", "alice"}, ids(e.Room("GET /tickets/{id}").Recent(time.Hour, 0)))
	assert.Equal(t, []string{"GET /about", "GET /tickets/{id}"}, e.RoomsOf("bob"))
	assert.Empty(t, e.RoomsOf("carol"))
	assert.Equal(t, 3, e.Len(), "every request is recorded globally")

	// A room of the application's own naming; "" records no room.
	perTicket := middleware.Track(e, middleware.FromContext(ctxKey{}), middleware.WithClock(clock),
		middleware.WithRoom(func(r *http.Request) string {
			if id := r.PathValue("id"); id != "" {
				return "ticket/" + id
			}
			return ""
		}))(mux)
	serve(perTicket, withUser(httptest.NewRequest("GET", "/tickets/7", nil), "dave"))
	serve(perTicket, withUser(httptest.NewRequest("GET", "/about", nil), "erin"))
	assert.Equal(t, []string{"ticket/7"}, e.RoomsOf("dave"))
	assert.Empty(t, e.RoomsOf("erin"))
	_, ok := e.Get("erin")
	assert.True(t, ok)
}

func ids(as []presence.Activity) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.ID
	}
	return out
}

func TestUnidentifiedNotRecorded(t *testing.T) {
	e := presence.New()
	h := middleware.Track(e, middleware.FromContext(ctxKey{}))(http.HandlerFunc(ok))
	serve(h, httptest.NewRequest("GET", "/", nil))
	assert.Zero(t, e.Len())

	// An IdentityFunc that says yes with an empty ID is not asked to touch.
	h = middleware.Track(e, func(*http.Request) (string, bool) { return "", true })(http.HandlerFunc(ok))
	serve(h, httptest.NewRequest("GET", "/", nil))
	assert.Zero(t, e.Len())
	assert.Zero(t, e.Stats().RejectedIDs)
}

func TestMetaRecording(t *testing.T) {
	tests := []struct {
		name   string
		opts   []middleware.Option
		remote string
		want   string
	}{
		{"off by default", nil, "203.0.113.9:5555", ""},
		{"ip", []middleware.Option{middleware.WithMetaIP()}, "203.0.113.9:5555", "203.0.113.9"},
		{"ua", []middleware.Option{middleware.WithMetaUserAgent()}, "203.0.113.9:5555", "test-agent/1.0"},
		{"both", []middleware.Option{middleware.WithMetaIP(), middleware.WithMetaUserAgent()}, "203.0.113.9:5555", "203.0.113.9 test-agent/1.0"},
		{"ipv6 as /64", []middleware.Option{middleware.WithMetaIP(), middleware.WithIPv6Prefix64()}, "[2001:db8:1:2:3:4:5:6]:443", "2001:db8:1:2::/64"},
		{"ipv6 whole", []middleware.Option{middleware.WithMetaIP()}, "[2001:db8:1:2:3:4:5:6]:443", "2001:db8:1:2:3:4:5:6"},
		{"ipv4 with the /64 option", []middleware.Option{middleware.WithMetaIP(), middleware.WithIPv6Prefix64()}, "203.0.113.9:5555", "203.0.113.9"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := presence.New()
			h := middleware.Track(e, middleware.FromContext(ctxKey{}), tt.opts...)(http.HandlerFunc(ok))
			r := withUser(httptest.NewRequest("GET", "/", nil), "u")
			r.RemoteAddr = tt.remote
			r.Header.Set("User-Agent", "test-agent/1.0")
			serve(h, r)
			a, _ := e.Get("u")
			assert.Equal(t, tt.want, a.Meta)
		})
	}
	t.Run("long user agent is cut", func(t *testing.T) {
		for _, n := range []int{presence.MaxMetaLen, presence.MaxMetaLen + 1, 5000} {
			e := presence.New()
			h := middleware.Track(e, middleware.FromContext(ctxKey{}), middleware.WithMetaUserAgent())(http.HandlerFunc(ok))
			r := withUser(httptest.NewRequest("GET", "/", nil), "u")
			r.Header.Set("User-Agent", strings.Repeat("a", n))
			serve(h, r)
			a, _ := e.Get("u")
			assert.Len(t, a.Meta, presence.MaxMetaLen, "a user agent of %d bytes", n)
		}
	})
	t.Run("a huge user agent costs what fits", func(t *testing.T) {
		e := presence.New()
		h := middleware.Track(e, middleware.FromContext(ctxKey{}), middleware.WithMetaIP(), middleware.WithMetaUserAgent())(http.HandlerFunc(ok))
		r := withUser(httptest.NewRequest("GET", "/", nil), "u")
		r.Header.Set("User-Agent", strings.Repeat("a", 1<<20))
		serve(h, r)
		const calls = 10 // averaged, so that other goroutines' allocations do not count
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range calls {
			serve(h, r)
		}
		runtime.ReadMemStats(&after)
		assert.Less(t, (after.TotalAlloc-before.TotalAlloc)/calls, uint64(16<<10), "bytes allocated per request")
		a, _ := e.Get("u")
		assert.Len(t, a.Meta, presence.MaxMetaLen)
	})
}

func TestAnonymousCookie(t *testing.T) {
	guests := presence.New()
	assign, visitor := middleware.Anonymous("visitor")
	h := assign(middleware.Track(guests, visitor)(http.HandlerFunc(ok)))

	w := serve(h, httptest.NewRequest("GET", "/", nil))
	cookies := w.Result().Cookies()
	require.Len(t, cookies, 1)
	c := cookies[0]
	assert.Equal(t, "visitor", c.Name)
	assert.Len(t, c.Value, 22)
	assert.True(t, c.HttpOnly)
	assert.Equal(t, http.SameSiteLaxMode, c.SameSite)
	assert.False(t, c.Secure, "plain HTTP")
	assert.Equal(t, "/", c.Path)
	assert.Equal(t, 365*24*3600, c.MaxAge)
	_, ok := guests.Get(c.Value)
	assert.True(t, ok, "the first request is counted already")

	// The cookie comes back: no new one, same visitor.
	r := httptest.NewRequest("GET", "/", nil)
	r.AddCookie(c)
	w = serve(h, r)
	assert.Empty(t, w.Result().Cookies())
	assert.Equal(t, 1, guests.Len())

	// Over TLS the cookie is Secure; a malformed one is replaced.
	r = httptest.NewRequest("GET", "/", nil)
	r.TLS = &tls.ConnectionState{}
	r.AddCookie(&http.Cookie{Name: "visitor", Value: "../../etc/passwd"})
	w = serve(h, r)
	require.Len(t, w.Result().Cookies(), 1)
	fresh := w.Result().Cookies()[0]
	assert.True(t, fresh.Secure)
	assert.NotEqual(t, c.Value, fresh.Value)
	_, ok = guests.Get("../../etc/passwd")
	assert.False(t, ok)
	assert.Equal(t, 2, guests.Len())

	// A well-formed ID with more after it is replaced too.
	r = httptest.NewRequest("GET", "/", nil)
	r.AddCookie(&http.Cookie{Name: "visitor", Value: c.Value + "AAAA"})
	w = serve(h, r)
	require.Len(t, w.Result().Cookies(), 1)
	assert.Len(t, w.Result().Cookies()[0].Value, 22)
	assert.Equal(t, 3, guests.Len())
}

func TestAnonymousFloodStaysAtCap(t *testing.T) {
	const limit = 1000
	guests := presence.New(presence.WithMaxUsers(limit))
	assign, visitor := middleware.Anonymous("visitor")
	h := assign(middleware.Track(guests, visitor)(http.HandlerFunc(ok)))
	for i := range 20_000 {
		r := httptest.NewRequest("GET", "/", nil)
		if i%2 == 0 { // half bring made-up, well-formed IDs; half none
			r.AddCookie(&http.Cookie{Name: "visitor", Value: fmt.Sprintf("%022d", i)})
		}
		serve(h, r)
		require.LessOrEqual(t, guests.Len(), limit)
	}
	assert.Equal(t, limit, guests.Len())
}

func TestTrackPanicsOnMistakes(t *testing.T) {
	e := presence.New()
	id := middleware.FromContext(ctxKey{})
	assert.PanicsWithValue(t, "middleware: Track: nil Recorder", func() { middleware.Track(nil, id) })
	assert.Panics(t, func() { middleware.Track(e, nil) })
	assert.PanicsWithValue(t, "middleware: Track: WithSkipPattern(\"(\"): error parsing regexp: missing closing ): `(`",
		func() { middleware.Track(e, id, middleware.WithSkipPattern("(")) })
	assert.Panics(t, func() {
		middleware.Track(e, id, middleware.WithTrustedProxies("X-Client-IP", netip.MustParsePrefix("10.0.0.0/8")))
	})
}

func TestIdentityPanicPropagates(t *testing.T) {
	e := presence.New()
	boom := func(*http.Request) (string, bool) { panic("identity broke") }
	h := middleware.Track(e, boom)(http.HandlerFunc(ok))
	assert.PanicsWithValue(t, "identity broke", func() { serve(h, httptest.NewRequest("GET", "/", nil)) })
	assert.Zero(t, e.Len())
	// The pooled writer was returned; the next request works.
	h2 := middleware.Track(e, middleware.FromContext(ctxKey{}))(http.HandlerFunc(ok))
	serve(h2, withUser(httptest.NewRequest("GET", "/", nil), "u"))
	assert.Equal(t, 1, e.Len())
}

func TestFlushAndUnwrapPassThrough(t *testing.T) {
	e := presence.New()
	// The handler reports through a channel: Flush sends the response
	// head, so the client may be done before the handler is.
	type result struct{ flushed, unwrapped bool }
	got := make(chan result, 1)
	h := middleware.Track(e, middleware.FromContext(ctxKey{}))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		var res result
		res.flushed = rc.Flush() == nil
		res.unwrapped = rc.SetWriteDeadline(time.Now().Add(time.Second)) != http.ErrNotSupported
		got <- res
	}))
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	require.NoError(t, err)
	resp.Body.Close()
	res := <-got
	assert.True(t, res.flushed)
	assert.True(t, res.unwrapped, "ResponseController reaches the server's writer through Unwrap")
}
