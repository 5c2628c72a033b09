package middleware_test

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/assert"

	"github.com/onlinenow/presence"
	"github.com/onlinenow/presence/middleware"
)

// TestCounters: one Counters shared by a Track and a Hold counts each
// request once, by what the middleware did with it, from many goroutines.
func TestCounters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := presence.New()
		defer e.Close()
		c := middleware.NewCounters()
		id := middleware.FromContext(ctxKey{})
		ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
		bad := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusInternalServerError) })
		track := middleware.Track(e, id, middleware.WithCounters(c), middleware.WithSkipPrefix("/static/"))
		hangUp := make(chan struct{})
		hold := middleware.Hold(e, id, middleware.WithCounters(c))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-hangUp }))

		var wg sync.WaitGroup
		for g := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 25 {
					serve(track(ok), withUser(httptest.NewRequest("GET", "/page", nil), "u"+string(rune('a'+g))))
					serve(track(ok), httptest.NewRequest("GET", "/page", nil)) // nobody
					serve(track(ok), withUser(httptest.NewRequest("GET", "/static/x.css", nil), "u"))
					serve(track(bad), withUser(httptest.NewRequest("GET", "/page", nil), "u"))
				}
			}()
		}
		wg.Wait()
		for range 3 {
			go serve(hold, withUser(httptest.NewRequest("GET", "/live", nil), "h"))
		}
		synctest.Wait()
		assert.Equal(t, middleware.CounterStats{Recorded: 100 + 3, Skipped: 100, Anonymous: 100, Status: 100, Held: 3, Open: 3}, c.Stats())
		close(hangUp)
		synctest.Wait()
		assert.Equal(t, int64(0), c.Stats().Open, "holds end with their requests")
		assert.Equal(t, uint64(3), c.Stats().Held)
	})
}
