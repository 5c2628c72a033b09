package middleware

import (
	"fmt"
	"net/http"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/onlinenow/presence"
)

// IdentityFunc tells who a request belongs to. It returns false for a
// request that should not be recorded (for example, not logged in).
type IdentityFunc func(r *http.Request) (id string, ok bool)

// Option configures Track.
type Option func(*config)

type config struct {
	skipPrefixes []string
	skipPatterns []string
	skipMethods  []string
	skipFuncs    []func(*http.Request) bool
	classes      [6]bool // by status class 1..5; index 0 unused
	classesSet   bool
	metaIP       bool
	metaUA       bool
	ipHeader     string
	proxies      []netip.Prefix
	ipv6Prefix64 bool
	room         func(*http.Request) string
	now          func() time.Time
	counters     *Counters
}

// WithSkipPrefix skips requests whose URL path starts with any of prefixes,
// such as "/static/" or "/healthz".
func WithSkipPrefix(prefixes ...string) Option {
	return func(c *config) { c.skipPrefixes = append(c.skipPrefixes, prefixes...) }
}

// WithSkipPattern skips requests whose URL path matches any of the regular
// expressions (package regexp syntax). They are compiled once, when Track is
// built, which panics if one is invalid.
func WithSkipPattern(exprs ...string) Option {
	return func(c *config) { c.skipPatterns = append(c.skipPatterns, exprs...) }
}

// WithSkipMethod skips requests with any of the methods, such as
// http.MethodOptions or http.MethodHead.
func WithSkipMethod(methods ...string) Option {
	return func(c *config) { c.skipMethods = append(c.skipMethods, methods...) }
}

// WithSkip skips requests for which skip returns true. It runs before the
// handler, on every request not already skipped.
func WithSkip(skip func(*http.Request) bool) Option {
	return func(c *config) { c.skipFuncs = append(c.skipFuncs, skip) }
}

// WithRoom records each request in the room that room names as well ("" for
// none), after the handler ran, so that it can read what routing set on the
// request. See [RoutePattern].
func WithRoom(room func(*http.Request) string) Option {
	return func(c *config) { c.room = room }
}

// RoutePattern is a room for WithRoom: the pattern of the [http.ServeMux]
// route that served the request (r.Pattern, such as "GET /tickets/{id}"),
// so that each kind of page is one room; "" if none matched. The mux sets
// the pattern on the request it was given: Track must wrap the ServeMux
// itself, not a handler that passes it a copy (r.WithContext).
func RoutePattern(r *http.Request) string { return r.Pattern }

// WithStatusClasses records only responses whose status is in one of the
// classes: 2 for 2xx, 3 for 3xx, and so on. The default is 1 to 4: every
// response but server errors, so that an outage does not look like a crowd.
func WithStatusClasses(classes ...int) Option {
	return func(c *config) {
		c.classes, c.classesSet = [6]bool{}, true
		for _, k := range classes {
			if k >= 1 && k <= 5 {
				c.classes[k] = true
			}
		}
	}
}

// WithMetaIP records the client IP as the user's meta (see the package
// documentation for how it is found). Meta is "IP" or, with WithMetaUserAgent too, "IP user-agent".
func WithMetaIP() Option { return func(c *config) { c.metaIP = true } }

// WithMetaUserAgent records the User-Agent header as the user's meta, after
// the IP if WithMetaIP is on, cut to 1 KiB in all.
func WithMetaUserAgent() Option { return func(c *config) { c.metaUA = true } }

// WithTrustedProxies makes the client IP come from header when the request
// arrives from one of the proxies' networks. header is the one the proxies
// set: "X-Forwarded-For", "X-Real-IP" or "Forwarded" (RFC 7239); any other
// makes Track panic. Other such headers are ignored, whatever they say.
func WithTrustedProxies(header string, proxies ...netip.Prefix) Option {
	return func(c *config) {
		c.ipHeader = http.CanonicalHeaderKey(header)
		c.proxies = append(c.proxies, proxies...)
	}
}

// WithIPv6Prefix64 records IPv6 client addresses as their /64 network (for
// example "2001:db8:1:2::/64"): a host usually owns a whole /64, and the
// rest of the address is often a temporary, private one.
func WithIPv6Prefix64() Option { return func(c *config) { c.ipv6Prefix64 = true } }

// WithClock sets the clock Track stamps activity with; nil selects time.Now.
func WithClock(now func() time.Time) Option { return func(c *config) { c.now = now } }

// tracker is a built Track middleware's configuration.
type tracker struct {
	config
	rec      presence.Recorder
	identify IdentityFunc
	patterns []*regexp.Regexp
	methods  map[string]bool
}

// Track returns middleware that records, after each request not skipped,
// activity by the user identify names, in rec: the engine or any
// presence.Backend. See the package documentation
// for what it records, when, and when it panics.
func Track(rec presence.Recorder, identify IdentityFunc, opts ...Option) func(http.Handler) http.Handler {
	if rec == nil {
		panic("middleware: Track: nil Recorder")
	}
	t := &tracker{rec: rec}
	t.build("Track", identify, opts)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if t.skip(r) {
				t.counters.inc(skipped)
				next.ServeHTTP(w, r)
				return
			}
			sw := writers.Get().(*statusWriter)
			sw.ResponseWriter, sw.status, sw.held = w, 0, false
			defer func() {
				sw.ResponseWriter = nil
				writers.Put(sw)
			}()
			next.ServeHTTP(sw, r)
			if sw.held {
				// Hold held this request's user, and released it with the
				// backend's grace; a touch now would keep the user online
				// a whole window after the connection closed. Hold
				// counted the request.
				return
			}
			t.record(r, sw.status)
		})
	}
}

// build applies opts and checks what Track and Hold share: they panic,
// naming themselves as who, on a nil identify, a bad pattern or an unknown
// proxy header.
func (t *tracker) build(who string, identify IdentityFunc, opts []Option) {
	if identify == nil {
		panic("middleware: " + who + ": nil IdentityFunc: say who a request belongs to")
	}
	t.identify = identify
	for _, o := range opts {
		o(&t.config)
	}
	if !t.classesSet {
		t.classes = [6]bool{false, true, true, true, true, false}
	}
	if t.now == nil {
		t.now = time.Now
	}
	for _, expr := range t.skipPatterns {
		re, err := regexp.Compile(expr)
		if err != nil {
			panic(fmt.Sprintf("middleware: %s: WithSkipPattern(%q): %v", who, expr, err))
		}
		t.patterns = append(t.patterns, re)
	}
	if len(t.skipMethods) > 0 {
		t.methods = map[string]bool{}
		for _, m := range t.skipMethods {
			t.methods[strings.ToUpper(m)] = true
		}
	}
	switch t.ipHeader {
	case "", "X-Forwarded-For", "X-Real-Ip", "Forwarded":
	default:
		panic(fmt.Sprintf("middleware: %s: WithTrustedProxies: unsupported header %q", who, t.ipHeader))
	}
}

func (t *tracker) skip(r *http.Request) bool {
	path := r.URL.Path
	for _, p := range t.skipPrefixes {
		if strings.HasPrefix(path, p) {
			return true
		}
	}
	if t.methods[r.Method] {
		return true
	}
	for _, re := range t.patterns {
		if re.MatchString(path) {
			return true
		}
	}
	for _, f := range t.skipFuncs {
		if f(r) {
			return true
		}
	}
	return false
}

func (t *tracker) record(r *http.Request, status int) {
	if status == 0 {
		status = http.StatusOK // the handler wrote nothing; net/http sends 200
	}
	if k := status / 100; k < 1 || k > 5 || !t.classes[k] {
		t.counters.inc(byStatus)
		return
	}
	id, ok := t.identify(r)
	if !ok || id == "" {
		t.counters.inc(anonymous)
		return
	}
	t.counters.inc(recorded)
	if room := t.roomOf(r); room != "" {
		t.rec.TouchInAt(room, id, t.now()) // and globally
	} else {
		t.rec.TouchAt(id, t.now())
	}
	if t.metaIP || t.metaUA {
		t.rec.SetMeta(id, t.metaOf(r))
	}
}

func (t *tracker) roomOf(r *http.Request) string {
	if t.room == nil {
		return ""
	}
	return t.room(r)
}

// metaOf returns the request's meta: the client IP (or its /64), then the
// user agent, space-separated, cut at presence.MaxMetaLen bytes. It builds the meta in
// a buffer on the stack, so a meta of up to 256 bytes (common user agents)
// costs one allocation, the string, and a longer one two; it copies no more
// of the user agent than fits, however long the header.
func (t *tracker) metaOf(r *http.Request) string {
	var buf [256]byte
	b := buf[:0]
	if t.metaIP {
		if ip, ok := ClientIP(r, t.ipHeader, t.proxies); ok {
			if t.ipv6Prefix64 && ip.Is6() {
				p, _ := ip.Prefix(64)
				b = p.AppendTo(b)
			} else {
				b = ip.AppendTo(b)
			}
		}
	}
	if t.metaUA {
		if ua := r.UserAgent(); ua != "" {
			if len(b) > 0 {
				b = append(b, ' ')
			}
			b = append(b, ua[:min(len(ua), presence.MaxMetaLen)]...)
		}
	}
	return string(b[:min(len(b), presence.MaxMetaLen)])
}

// statusWriter remembers the status a handler sent. Writers are pooled, so
// that tracking a request allocates nothing: a handler must not use its
// ResponseWriter after returning, as net/http already requires.
type statusWriter struct {
	http.ResponseWriter
	status int
	held   bool // a Hold inside held the request's user: Track records nothing more
}

// markHeld tells the Track around a Hold, through the ResponseWriter it
// passed down (unwrapping any writers between them), that the request's
// user was held.
func markHeld(w http.ResponseWriter) {
	for w != nil {
		if sw, ok := w.(*statusWriter); ok {
			sw.held = true
			return
		}
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return
		}
		w = u.Unwrap()
	}
}

var writers = sync.Pool{New: func() any { return new(statusWriter) }}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		w.status = code // 1xx but 101 are informational: the final status comes later
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Flush passes through to the underlying writer, for streaming handlers.
func (w *statusWriter) Flush() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the underlying writer (for
// Hijack, SetReadDeadline and the like).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
