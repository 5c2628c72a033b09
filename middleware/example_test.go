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

	track := middleware.Track(users, middleware.FromContext(userKey{}),
		middleware.WithSkipPrefix("/healthz"))
	srv := httptest.NewServer(authenticate(track(mux)))
	defer srv.Close()

	for _, path := range []string{"/?as=alice", "/healthz?as=bob", "/fail?as=carol", "/?as=dave", "/"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			panic(err)
		}
		resp.Body.Close()
	}
	for _, a := range users.Recent(time.Minute, 0) {
		fmt.Println(a.ID, "is online")
	}
	// Output:
	// dave is online
	// alice is online
}
