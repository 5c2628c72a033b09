package presencehttp_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/onlinenow/presence"
	"github.com/onlinenow/presence/presencehttp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func clock() time.Time { return t0 }

func admin(r *http.Request) bool { return r.Header.Get("X-Admin") == "yes" }

func get(t *testing.T, h http.Handler, path string, authorized bool) (*httptest.ResponseRecorder, map[string]any) {
	t.Helper()
	r := httptest.NewRequest("GET", path, nil)
	if authorized {
		r.Header.Set("X-Admin", "yes")
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	var body map[string]any
	if strings.HasPrefix(w.Header().Get("Content-Type"), "application/json") {
		require.NoError(t, json.Unmarshal(w.Body.Bytes(), &body), w.Body.String())
	}
	return w, body
}

func populated() *presence.Engine {
	e := presence.New(presence.WithClock(clock))
	for i := range 100 {
		e.TouchAt(fmt.Sprint("user-", i), t0.Add(-time.Duration(i)*time.Minute))
	}
	e.SetMeta("user-0", "203.0.113.7 Mozilla/5.0")
	return e
}

func handler(e *presence.Engine, opts ...presencehttp.Option) http.Handler {
	opts = append([]presencehttp.Option{presencehttp.WithClock(clock)}, opts...)
	return presencehttp.Handler(e.Backend(), admin, opts...)
}

func TestForbiddenLearnsNothing(t *testing.T) {
	h := handler(populated(), presencehttp.WithMeta())
	for _, path := range []string{"/", "/app.js", "/api/events", "/api/counts", "/api/users", "/api/user?id=user-0", "/api/history", "/api/nope",
		"/api/rooms", "/api/users?room=doc", "/api/counts?room=doc", "/api/user?id=user-0&room=doc"} {
		w, body := get(t, h, path, false)
		assert.Equal(t, http.StatusForbidden, w.Code, path)
		assert.Equal(t, map[string]any{"error": "forbidden"}, body, path)
		assert.NotContains(t, w.Body.String(), "user-", path)
		assert.NotContains(t, w.Body.String(), "100", path)
	}
	assert.PanicsWithValue(t, "presencehttp: Handler: nil authorize: say who may see who is online", func() {
		presencehttp.Handler(presence.New().Backend(), nil)
	})
}

func TestCounts(t *testing.T) {
	h := handler(populated())
	w, body := get(t, h, "/api/counts", true)
	require.Equal(t, http.StatusOK, w.Code)
	assert.Equal(t, "no-store", w.Header().Get("Cache-Control"))
	counts := body["counts"].([]any)
	want := map[string]float64{"1m0s": 2, "5m0s": 6, "15m0s": 16, "1h0m0s": 61, "24h0m0s": 100}
	require.Len(t, counts, len(want))
	for _, c := range counts {
		c := c.(map[string]any)
		assert.Equal(t, want[c["window"].(string)], c["count"], c["window"])
	}

	_, body = get(t, h, "/api/counts?windows=90s,2m", true)
	counts = body["counts"].([]any)
	require.Len(t, counts, 2)
	assert.Equal(t, float64(90), counts[0].(map[string]any)["seconds"])
	assert.Equal(t, float64(2), counts[0].(map[string]any)["count"])

	w, body = get(t, h, "/api/counts?windows="+strings.Repeat("1m,", 15)+"1m", true)
	require.Equal(t, http.StatusOK, w.Code, "16 windows, the most one query may ask")
	assert.Len(t, body["counts"], 16)
}

func TestBadParameters(t *testing.T) {
	h := handler(populated())
	for _, path := range []string{
		"/api/counts?windows=abc",
		"/api/counts?windows=-5m",
		"/api/counts?windows=0s",
		"/api/counts?windows=99999h",
		"/api/counts?windows=" + strings.Repeat("1m,", 20) + "1m",
		"/api/counts?windows=" + strings.Repeat("1m,", 16) + "1m", // 17: one too many
		"/api/users?window=abc",
		"/api/users?limit=-1",
		"/api/users?limit=0",
		"/api/users?limit=ten",
		"/api/users?limit=99999999999999999999999",
		"/api/users?cursor=forged!!",
		"/api/users?cursor=" + url.QueryEscape("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
		"/api/user",
		"/api/user?id=" + strings.Repeat("x", 513),
	} {
		w, body := get(t, h, path, true)
		assert.Equal(t, http.StatusBadRequest, w.Code, path)
		assert.NotEmpty(t, body["error"], path)
	}
}

// TestHostileParameters sends parameters of a megabyte each: every one is
// refused with a short answer, and the handler allocates no memory in
// proportion to the parameter's length (it is not split, parsed or quoted
// whole; the query's parse keeps its values in the request's bytes).
func TestHostileParameters(t *testing.T) {
	h := handler(populated())
	const mb = 1 << 20
	for name, path := range map[string]string{
		"commas":     "/api/counts?windows=" + strings.Repeat(",", mb),
		"windows":    "/api/counts?windows=1m," + strings.Repeat("1", mb),
		"window":     "/api/users?window=" + strings.Repeat("9", mb) + "s",
		"limit":      "/api/users?limit=" + strings.Repeat("9", mb),
		"limit-sign": "/api/users?limit=-" + strings.Repeat("0", mb),
		"cursor":     "/api/users?cursor=" + strings.Repeat("A", mb),
		"id":         "/api/user?id=" + strings.Repeat("x", mb),
	} {
		r := httptest.NewRequest("GET", path, nil)
		r.Header.Set("X-Admin", "yes")
		const calls = 10 // averaged, so that other goroutines' allocations do not count
		var w *httptest.ResponseRecorder
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range calls {
			w = httptest.NewRecorder()
			h.ServeHTTP(w, r)
		}
		runtime.ReadMemStats(&after)
		assert.Equal(t, http.StatusBadRequest, w.Code, name)
		assert.Less(t, w.Body.Len(), 256, name)
		assert.Less(t, (after.TotalAlloc-before.TotalAlloc)/calls, uint64(64<<10), name)
	}
}

func TestUsersAndMeta(t *testing.T) {
	e := populated()
	_, body := get(t, handler(e), "/api/users?window=3m&limit=10", true)
	users := body["users"].([]any)
	require.Len(t, users, 4)
	first := users[0].(map[string]any)
	assert.Equal(t, "user-0", first["id"])
	assert.Equal(t, t0.Format(time.RFC3339), first["last_seen"])
	assert.NotContains(t, first, "meta", "meta is off by default")
	assert.Equal(t, "", body["next"])

	_, body = get(t, handler(e, presencehttp.WithMeta()), "/api/users?window=3m", true)
	assert.Equal(t, "203.0.113.7 Mozilla/5.0", body["users"].([]any)[0].(map[string]any)["meta"])

	_, body = get(t, handler(e, presencehttp.WithMaxPageSize(7)), "/api/users?window=24h&limit=1000", true)
	assert.Len(t, body["users"], 7, "the page size is capped")
	assert.NotEmpty(t, body["next"])
	_, body = get(t, handler(e, presencehttp.WithMaxPageSize(7)), "/api/users?window=24h", true)
	assert.Len(t, body["users"], 7, "the default page size is capped too")
}

func TestUser(t *testing.T) {
	h := handler(populated())
	w, body := get(t, h, "/api/user?id=user-3", true)
	require.Equal(t, http.StatusOK, w.Code)
	assert.Equal(t, t0.Add(-3*time.Minute).Format(time.RFC3339), body["last_seen"])
	w, body = get(t, h, "/api/user?id=nobody", true)
	assert.Equal(t, http.StatusNotFound, w.Code)
	assert.Equal(t, "no such user", body["error"])
}

func TestPagingAllUsersOnce(t *testing.T) {
	e := presence.New(presence.WithClock(clock))
	const n = 10_000
	for i := range n { // 10,000 users in three timestamps
		e.TouchAt(fmt.Sprintf("u%05d", i), t0.Add(-time.Duration(i%3)*time.Second))
	}
	h := handler(e)
	seen := map[string]int{}
	cursor := ""
	for pages := 0; ; pages++ {
		require.Less(t, pages, n, "the walk ends")
		_, body := get(t, h, "/api/users?window=1h&limit=500&cursor="+url.QueryEscape(cursor), true)
		for _, u := range body["users"].([]any) {
			seen[u.(map[string]any)["id"].(string)]++
		}
		cursor = body["next"].(string)
		if cursor == "" {
			break
		}
	}
	require.Len(t, seen, n)
	for id, c := range seen {
		require.Equal(t, 1, c, id)
	}
}

// down is a backend whose queries fail, as a remote one that is down, and
// that was made without events.
type down struct{ presence.Backend }

func newDown() down { return down{presence.New().Backend()} }

var errDown = errors.New("dial tcp 10.1.2.3:6379: connection refused")

func (down) Count(context.Context, time.Duration) (int, error) { return 0, errDown }
func (down) Page(context.Context, time.Duration, string, int) ([]presence.Activity, string, error) {
	return nil, "", errDown
}
func (down) Get(context.Context, string) (presence.Activity, bool, error) {
	return presence.Activity{}, false, errDown
}
func (down) Rooms(context.Context, time.Duration, int) ([]presence.RoomCount, error) {
	return nil, errDown
}
func (d down) Room(string) presence.Querier { return d }
func (down) Subscribe(context.Context, int, ...presence.Scope) (*presence.Subscription, error) {
	return nil, presence.ErrNoEvents
}

// TestRooms: api/rooms lists the busiest rooms; room= answers counts, users
// and user for one room's members, refuses bad names and cursors of
// another walk.
func TestRooms(t *testing.T) {
	e := populated()
	for i := range 30 {
		e.TouchInAt("doc", fmt.Sprint("user-", i), t0.Add(-time.Duration(i)*time.Second))
	}
	e.TouchInAt("chat", "user-1", t0.Add(-time.Minute))
	h := handler(e, presencehttp.WithMeta())

	_, body := get(t, h, "/api/rooms", true)
	assert.Equal(t, []any{map[string]any{"room": "doc", "count": 30.0}, map[string]any{"room": "chat", "count": 1.0}}, body["rooms"])
	_, body = get(t, h, "/api/rooms?limit=1&window=1m", true)
	assert.Equal(t, []any{map[string]any{"room": "doc", "count": 30.0}}, body["rooms"])
	_, body = get(t, h, "/api/counts?room=doc&windows=10s,1m", true)
	counts := body["counts"].([]any)
	assert.Equal(t, 11.0, counts[0].(map[string]any)["count"], "the last 10 seconds and the one before")
	assert.Equal(t, 30.0, counts[1].(map[string]any)["count"])

	// Pages of the room's members, at their times in the room, with the
	// user's meta; the room's cursor is refused by another room and by
	// the users of all.
	_, body = get(t, h, "/api/users?room=doc&limit=20", true)
	users := body["users"].([]any)
	require.Len(t, users, 20)
	first := users[0].(map[string]any)
	assert.Equal(t, "user-0", first["id"])
	assert.Equal(t, "203.0.113.7 Mozilla/5.0", first["meta"])
	next := body["next"].(string)
	require.NotEmpty(t, next)
	_, body = get(t, h, "/api/users?room=doc&limit=20&cursor="+url.QueryEscape(next), true)
	assert.Len(t, body["users"], 10)
	for _, path := range []string{"/api/users?room=chat&cursor=", "/api/users?cursor="} {
		w, body := get(t, h, path+url.QueryEscape(next), true)
		assert.Equal(t, http.StatusBadRequest, w.Code, path)
		assert.Contains(t, body["error"], "cursor", path)
	}

	_, body = get(t, h, "/api/user?id=user-1&room=chat", true)
	assert.Equal(t, t0.Add(-time.Minute).Format(time.RFC3339), body["last_seen"], "the time in the room")
	w, _ := get(t, h, "/api/user?id=user-50&room=chat", true)
	assert.Equal(t, http.StatusNotFound, w.Code)

	for _, bad := range []string{"", strings.Repeat("r", presence.MaxIDLen+1), "%FF", "a%00b"} {
		for _, path := range []string{"/api/counts", "/api/users", "/api/user?id=user-0&x=1"} {
			sep := "?"
			if strings.Contains(path, "?") {
				sep = "&"
			}
			w, body := get(t, h, path+sep+"room="+bad, true)
			assert.Equal(t, http.StatusBadRequest, w.Code, "%s room %q", path, bad)
			assert.Contains(t, body["error"], "room", path)
		}
	}

}

func TestBackendDown(t *testing.T) {
	h := presencehttp.Handler(newDown(), admin)
	for _, path := range []string{"/api/counts", "/api/users", "/api/user?id=x", "/api/rooms", "/api/users?room=doc"} {
		w, body := get(t, h, path, true)
		assert.Equal(t, http.StatusServiceUnavailable, w.Code, path)
		assert.Equal(t, "presence backend unavailable", body["error"])
		assert.NotContains(t, w.Body.String(), "10.1.2.3", "internals stay inside")
	}
}

func TestDashboardAssets(t *testing.T) {
	h := handler(populated())
	w, _ := get(t, h, "/", true)
	require.Equal(t, http.StatusOK, w.Code)
	assert.Contains(t, w.Body.String(), "<title>Who is online</title>")
	assert.Contains(t, w.Header().Get("Content-Security-Policy"), "default-src 'self'")
	assert.NotContains(t, w.Body.String(), "http://", "no external assets")
	assert.NotContains(t, w.Body.String(), "https://", "no external assets")
	w, _ = get(t, h, "/app.js", true)
	assert.Equal(t, http.StatusOK, w.Code)
	assert.Contains(t, w.Header().Get("Content-Type"), "javascript")
	assert.NotContains(t, w.Body.String(), "innerHTML", "user data is set as text only")
	w, _ = get(t, h, "/app.css", true)
	assert.Equal(t, http.StatusOK, w.Code)
}

func TestHistory(t *testing.T) {
	now := t0
	e := presence.New(presence.WithClock(func() time.Time { return now }))
	for i := range 100 {
		e.TouchAt(fmt.Sprint("user-", i), t0.Add(-time.Duration(i)*time.Minute))
	}
	hist := presencehttp.NewHistory(e.Backend(),
		presencehttp.WithHistoryWindow(5*time.Minute), presencehttp.WithHistoryInterval(10*time.Second),
		presencehttp.WithHistorySize(3), presencehttp.WithHistoryClock(func() time.Time { return now }))
	h := handler(e, presencehttp.WithHistory(hist))
	_, body := get(t, h, "/api/history", true)
	assert.Empty(t, body["points"])
	ctx := context.Background()
	// populated's users are at t0-0..99 minutes, so a 5-minute window at
	// t0+k minutes holds users k..k+4 minutes back: 5-k of them from t0's
	// side, as the clock moves a minute per sample.
	for range 5 {
		require.NoError(t, hist.Sample(ctx))
		now = now.Add(time.Minute)
	}
	_, body = get(t, h, "/api/history", true)
	assert.Equal(t, float64(10), body["every_seconds"])
	points := body["points"].([]any)
	require.Len(t, points, 3, "a ring of three keeps the newest three")
	for i, p := range points {
		p := p.(map[string]any)
		at := t0.Add(time.Duration(i+2) * time.Minute)
		assert.Equal(t, at.Format(time.RFC3339), p["t"])
		assert.Equal(t, float64(e.CountSince(at.Add(-5*time.Minute))), p["count"])
	}
	assert.Equal(t, []int{4, 3, 2}, countsOf(hist.Points()), "oldest first once the ring has wrapped")

	// The defaults: a 5-minute window.
	now = t0
	hist = presencehttp.NewHistory(e.Backend(), presencehttp.WithHistoryClock(clock))
	require.NoError(t, hist.Sample(ctx))
	assert.Equal(t, []int{6}, countsOf(hist.Points()), "users at t0-0..5 minutes")

	assert.Error(t, presencehttp.NewHistory(newDown()).Sample(ctx))
}

func countsOf(points []presencehttp.Point) []int {
	var counts []int
	for _, p := range points {
		counts = append(counts, p.Count)
	}
	return counts
}
