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
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestServerWiring(t *testing.T) {
	users, guests := presence.New(), presence.New()
	hist := presencehttp.NewHistory(presencehttp.FromEngine(users))
	srv := httptest.NewServer(handler(newApp(users, guests, hist, "s3cret", []byte("key"), true)))
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

// TestLivePage opens the live page's stream as alice, then as bob: alice
// sees bob come and, once bob's stream closes and the hold grace passes,
// go.
func TestLivePage(t *testing.T) {
	users := presence.New(presence.WithResolution(10*time.Millisecond), presence.WithHoldGrace(10*time.Millisecond))
	defer users.Close()
	guests := presence.New()
	hist := presencehttp.NewHistory(presencehttp.FromEngine(users))
	srv := httptest.NewServer(handler(newApp(users, guests, hist, "", []byte("key"), true)))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// open signs in as name and opens the viewers stream of doc-1; next
	// returns the viewers of the stream's next event.
	open := func(name string, ctx context.Context) (next func() []string) {
		jar, _ := cookiejar.New(nil)
		client := &http.Client{Jar: jar}
		resp, err := client.Get(srv.URL + "/login?user=" + name)
		require.NoError(t, err)
		resp.Body.Close()
		resp, err = client.Get(srv.URL + "/live/doc-1")
		require.NoError(t, err)
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Contains(t, string(page), "EventSource")
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/live/doc-1/viewers", nil)
		resp, err = client.Do(req)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		t.Cleanup(func() { resp.Body.Close() })
		lines := bufio.NewScanner(resp.Body)
		return func() []string {
			for lines.Scan() {
				if data, ok := strings.CutPrefix(lines.Text(), "data: "); ok {
					var v struct {
						You     string
						Viewers []string
					}
					require.NoError(t, json.Unmarshal([]byte(data), &v))
					assert.Equal(t, name, v.You)
					slices.Sort(v.Viewers)
					return v.Viewers
				}
			}
			t.Fatalf("%s's stream ended: %v", name, lines.Err())
			return nil
		}
	}

	alice := open("alice", ctx)
	assert.Equal(t, []string{"alice"}, alice())
	bobCtx, bobLeaves := context.WithCancel(ctx)
	bob := open("bob", bobCtx)
	assert.Equal(t, []string{"alice", "bob"}, bob(), "bob sees alice")
	assert.Equal(t, []string{"alice", "bob"}, alice(), "alice sees bob join")
	bobLeaves()
	assert.Equal(t, []string{"alice"}, alice(), "and leave")

	resp, err := http.Get(srv.URL + "/live/doc-1/viewers")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "a guest is not a viewer")
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
	hist := presencehttp.NewHistory(presencehttp.FromEngine(users))
	site, metrics := newApp(users, guests, hist, "s3cret", []byte("key"), true)
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
