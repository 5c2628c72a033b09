package middleware_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/onlinenow/presence"
	"github.com/onlinenow/presence/middleware"
)

type userKey struct{}

// authenticate stands in for the application's own authentication: here
// the user is simply named by a query parameter.
func authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u := r.URL.Query().Get("as"); u != "" {
			r = r.WithContext(context.WithValue(r.Context(), userKey{}, u))
		}
		next.ServeHTTP(w, r)
	})
}

func Example() {
	users := presence.New()
	defer users.Close()

	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "hello") })
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("/fail", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "oops", 500) })

	// A clock a second apart per request keeps the output in a fixed order;
	// servers leave WithClock out.
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	tick := func() time.Time { now = now.Add(time.Second); return now }
	track := middleware.Track(users, middleware.FromContext(userKey{}),
		middleware.WithSkipPrefix("/healthz"), middleware.WithClock(tick))
	srv := httptest.NewServer(authenticate(track(mux)))
	defer srv.Close()

	for _, path := range []string{"/?as=alice", "/healthz?as=bob", "/fail?as=carol", "/?as=dave", "/"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			panic(err)
		}
		resp.Body.Close()
	}
	for a := range users.Since(time.Time{}) {
		fmt.Println(a.ID, "is online")
	}
	// Output:
	// dave is online
	// alice is online
}
