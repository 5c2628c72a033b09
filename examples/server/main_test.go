package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/onlinenow/presence"
	"github.com/onlinenow/presence/presencehttp"
	"github.com/onlinenow/presence/presenceprom"
	"github.com/onlinenow/presence/redispresence"
	"github.com/onlinenow/presence/redispresence/redistest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestServerWiring(t *testing.T) {
	users, guests := presence.New(), presence.New()
	srv := httptest.NewServer(handler(engineApp(users, guests, "s3cret")))
	defer srv.Close()
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	get := func(path string) int {
		resp, err := client.Get(srv.URL + path)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}

	assert.Equal(t, 200, get("/"))
	assert.Equal(t, 1, guests.Len(), "a guest is counted by visitor cookie")
	assert.Equal(t, 0, users.Len())

	assert.Equal(t, 200, get("/login?user=alice")) // redirects to / as alice
	_, ok := users.Get("alice")
	assert.True(t, ok)
	assert.Equal(t, []string{"GET /{$}"}, users.RoomsOf("alice"), "the route is the room")
	assert.Equal(t, 200, get("/healthz"))

	assert.Equal(t, 403, get("/admin/presence/api/counts"), "no admin cookie yet")
	assert.Equal(t, 403, get("/admin/login?token=wrong"))
	assert.Equal(t, 200, get("/admin/login?token=s3cret")) // lands on the dashboard
	assert.Equal(t, 200, get("/admin/presence/api/counts"))

	// A forged user cookie is not a user.
	forged, _ := http.NewRequest("GET", srv.URL+"/", nil)
	forged.AddCookie(&http.Cookie{Name: "user", Value: "mallory.AAAA"})
	resp, err := http.DefaultClient.Do(forged)
	require.NoError(t, err)
	resp.Body.Close()
	_, ok = users.Get("mallory")
	assert.False(t, ok)
}

// TestLivePage opens the live page's room stream as alice, then as bob:
// alice sees bob come with his data, update it, and go when his stream
// closes.
func TestLivePage(t *testing.T) {
	users := presence.New(presence.WithResolution(10*time.Millisecond), presence.WithHoldGrace(10*time.Millisecond))
	defer users.Close()
	guests := presence.New()
	srv := httptest.NewServer(handler(engineApp(users, guests, "")))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	type member struct {
		ID   string
		Data struct{ Status string }
	}
	type message struct {
		Self, Conn     string
		Members, Joins []member
		Leaves         []member
	}
	// open signs in as name and opens the room stream of doc-1; next
	// returns the stream's next message.
	open := func(name string, ctx context.Context) (client *http.Client, next func() (string, message)) {
		jar, _ := cookiejar.New(nil)
		client = &http.Client{Jar: jar}
		resp, err := client.Get(srv.URL + "/login?user=" + name)
		require.NoError(t, err)
		resp.Body.Close()
		resp, err = client.Get(srv.URL + "/live/doc-1")
		require.NoError(t, err)
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Contains(t, string(page), `import { join } from "/live/client.js"`)
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+`/live/doc-1/events?data={"status":"hi"}`, nil)
		resp, err = client.Do(req)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		t.Cleanup(func() { resp.Body.Close() })
		lines := bufio.NewScanner(resp.Body)
		return client, func() (string, message) {
			event := ""
			for lines.Scan() {
				if e, ok := strings.CutPrefix(lines.Text(), "event: "); ok {
					event = e
				}
				if data, ok := strings.CutPrefix(lines.Text(), "data: "); ok {
					var m message
					require.NoError(t, json.Unmarshal([]byte(data), &m))
					return event, m
				}
			}
			t.Fatalf("%s's stream ended: %v", name, lines.Err())
			return "", message{}
		}
	}
	ids := func(ms []member) []string {
		var out []string
		for _, m := range ms {
			out = append(out, m.ID+":"+m.Data.Status)
		}
		slices.Sort(out)
		return out
	}

	_, alice := open("alice", ctx)
	kind, m := alice()
	assert.Equal(t, "state", kind)
	assert.Equal(t, "alice", m.Self)
	assert.Equal(t, []string{"alice:hi"}, ids(m.Members))
	bobCtx, bobLeaves := context.WithCancel(ctx)
	bobClient, bob := open("bob", bobCtx)
	_, m = bob()
	assert.Equal(t, []string{"alice:hi", "bob:hi"}, ids(m.Members), "bob sees alice")
	kind, d := alice()
	assert.Equal(t, "diff", kind)
	assert.Equal(t, []string{"bob:hi"}, ids(d.Joins), "alice sees bob join")

	resp, err := bobClient.Post(srv.URL+"/live/doc-1/data?conn="+m.Conn, "application/json", strings.NewReader(`{"status":"typing"}`))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusNoContent, resp.StatusCode)
	_, d = alice()
	assert.Equal(t, []string{"bob:typing"}, ids(d.Joins), "and update his status")
	bobLeaves()
	_, d = alice()
	assert.Equal(t, []string{"bob:"}, ids(d.Leaves), "and leave")

	resp, err = http.Get(srv.URL + "/live/doc-1/events")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusForbidden, resp.StatusCode, "a guest is not a viewer")
}

// handler is newApp's site, for tests that do not scrape.
func handler(site, _ http.Handler) http.Handler { return site }

// TestMetrics: /admin/metrics answers the admin only (cookie or bearer
// token), with both engines' and the middleware's metrics after requests;
// the metrics handler alone is what -metrics-addr serves.
func TestMetrics(t *testing.T) {
	users, guests := presence.New(), presence.New()
	defer users.Close()
	defer guests.Close()
	site, metrics := engineApp(users, guests, "s3cret")
	srv := httptest.NewServer(site)
	defer srv.Close()
	get := func(path, bearer string) (int, string) {
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	jar, _ := cookiejar.New(nil)
	alice := &http.Client{Jar: jar}
	resp, err := alice.Get(srv.URL + "/login?user=alice")
	require.NoError(t, err)
	resp.Body.Close()
	get("/", "") // a guest

	code, _ := get("/admin/metrics", "")
	assert.Equal(t, http.StatusForbidden, code)
	code, _ = get("/admin/metrics", "wrong")
	assert.Equal(t, http.StatusForbidden, code)
	code, body := get("/admin/metrics", "s3cret")
	require.Equal(t, http.StatusOK, code)
	for _, line := range []string{
		`presence_users{engine="users"} 1`,
		`presence_users{engine="guests"} 2`, // the sign-in request was a guest's
		`presence_active_users{engine="users",window="5m"} 1`,
		`presence_http_requests_total{result="recorded"} 3`, // the two guests' and alice's
		"go_goroutines ",
	} {
		assert.True(t, slices.Contains(strings.Split(body, "\n"), line) || strings.HasSuffix(line, " ") && strings.Contains(body, "\n"+line), "no line %q", line)
	}

	rec := httptest.NewRecorder()
	metrics.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	assert.True(t, slices.Contains(strings.Split(rec.Body.String(), "\n"), `presence_users{engine="users"} 1`))
}

// engineApp is newApp over two engines, as main wires it without -redis.
func engineApp(users, guests *presence.Engine, token string) (site, metrics http.Handler) {
	return newApp(users.Backend(), guests, presencehttp.NewHistory(users.Backend()), token, []byte("key"), true,
		presenceprom.NewCollector(users, presenceprom.WithConstLabels(prometheus.Labels{"engine": "users"}),
			presenceprom.WithWindow("5m", 5*time.Minute)))
}

// TestTwoServersOnRedis runs two servers as -redis runs them, on one
// redis-server: a user signed in on one is on the other's dashboard, in
// its room, and its metrics are the Store's.
func TestTwoServersOnRedis(t *testing.T) {
	rs := redistest.Start(t)
	var sites []*httptest.Server
	var stores []*redispresence.Store
	for range 2 {
		users, metrics, err := openUsers(rs.Addr(), "")
		require.NoError(t, err)
		s := users.(*redispresence.Store)
		t.Cleanup(func() { s.Close(context.Background()) })
		site, _ := newApp(users, presence.New(), presencehttp.NewHistory(users), "s3cret", []byte("key"), true, metrics)
		srv := httptest.NewServer(site)
		t.Cleanup(srv.Close)
		sites, stores = append(sites, srv), append(stores, s)
	}
	jar, _ := cookiejar.New(nil)
	alice := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	resp, err := alice.Get(sites[0].URL + "/login?user=alice")
	require.NoError(t, err)
	resp.Body.Close()
	require.NoError(t, stores[0].Flush(context.Background()))

	admin := func(path string) map[string]any {
		req, _ := http.NewRequest("GET", sites[1].URL+path, nil)
		req.Header.Set("Authorization", "Bearer s3cret")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode, path)
		var body map[string]any
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
		return body
	}
	users := admin("/admin/presence/api/users")["users"].([]any)
	require.Len(t, users, 1)
	assert.Equal(t, "alice", users[0].(map[string]any)["id"])
	rooms := admin("/admin/presence/api/rooms")["rooms"].([]any)
	assert.Equal(t, []any{map[string]any{"room": "GET /{$}", "count": 1.0}}, rooms)

	req, _ := http.NewRequest("GET", sites[0].URL+"/admin/metrics", nil)
	req.Header.Set("Authorization", "Bearer s3cret")
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Contains(t, string(body), `presence_redis_touches_total{engine="users"} 1`)
}
