package middleware_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/onlinenow/presence"
	"github.com/onlinenow/presence/middleware"
)

// nopWriter is a ResponseWriter that costs nothing, so the benchmarks
// measure the middleware rather than httptest.
type nopWriter struct{ h http.Header }

func (w nopWriter) Header() http.Header         { return w.h }
func (w nopWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w nopWriter) WriteHeader(int)             {}

// BenchmarkTrack compares a bare handler with the same handler behind
// Track, for an identified user whose slot does not change (one hot user,
// the real clock), from all procs. "tracked-meta" also records the client
// IP and user agent as meta, into an engine with retention, where SetMeta
// reads the clock even when the meta is unchanged. "tracked-counted" is
// "tracked" counting its requests (WithCounters).
func BenchmarkTrack(b *testing.B) {
	empty := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	r := withUser(httptest.NewRequest("GET", "/page", nil), "alice")
	r.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64)")
	tracked := middleware.Track(presence.New(), middleware.FromContext(ctxKey{}), middleware.WithSkipPrefix("/static/"))(empty)
	withMeta := middleware.Track(presence.New(presence.WithRetention(24*time.Hour)), middleware.FromContext(ctxKey{}),
		middleware.WithSkipPrefix("/static/"), middleware.WithMetaIP(), middleware.WithMetaUserAgent())(empty)
	counted := middleware.Track(presence.New(), middleware.FromContext(ctxKey{}), middleware.WithSkipPrefix("/static/"),
		middleware.WithCounters(middleware.NewCounters()))(empty)
	for name, h := range map[string]http.Handler{"bare": empty, "tracked": tracked, "tracked-meta": withMeta, "tracked-counted": counted} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				w := nopWriter{h: http.Header{}}
				for pb.Next() {
					h.ServeHTTP(w, r)
				}
			})
		})
	}
}
