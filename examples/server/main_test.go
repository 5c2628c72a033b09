package main

import (
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
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
	srv := httptest.NewServer(newApp(users, guests, hist, "s3cret", []byte("key")))
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
