// Package middleware records user activity from net/http requests into a
// presence backend: a [presence.Recorder], which the engine and every
// [presence.Backend] (the Redis Store too) are.
//
//	e := presence.New()
//	track := middleware.Track(e, middleware.FromContext(userKey),
//		middleware.WithSkipPrefix("/static/", "/healthz"))
//	http.ListenAndServe(":8080", authenticate(track(mux)))
//
// # Identity
//
// Track takes an [IdentityFunc] as a required argument: the application
// states on purpose who a request belongs to, usually with [FromContext]
// reading what its authentication middleware stored. Nothing a client sends
// becomes an identity by default; [FromHeader] and [FromCookie] are for
// values an upstream proxy or the application itself vouches for.
// [Anonymous] gives guests a random visitor ID in a cookie, to count them
// in an engine of their own.
//
// # Recording
//
// Track records after the handler has run, and only for the status classes
// chosen with [WithStatusClasses] (by default every response but 5xx).
// Recording is one TouchAt; with meta recording on, also building the meta
// (one allocation up to 256 bytes, two beyond) and a SetMeta, which takes
// no lock when the meta has not changed. With [WithRoom], the touch is a
// TouchInAt of the room it names, which records the
// user globally too; [RoutePattern] names the ServeMux route. It never
// writes to the response and never fails a request.
// Skip rules ([WithSkipPrefix], [WithSkipPattern], [WithSkipMethod],
// [WithSkip]) are checked before the handler, and a skipped request costs
// nothing more.
//
// # Long-lived connections
//
// A Server-Sent Events stream or a websocket is one request that lasts as
// long as the user is there. [Hold] wraps such a handler: the request's
// user is held in the backend (its Hold, or HoldIn with WithRoom)
// from before the handler runs until it returns, so the user is online for
// as long as the connection is open, and goes offline one hold grace after
// the last of its connections closes: a [Track] around it records
// nothing for the held request, so as not to undo the grace.
//
//	live := middleware.Hold(e, middleware.FromContext(userKey),
//		middleware.WithRoom(func(r *http.Request) string { return "doc/" + r.PathValue("id") }))
//	mux.Handle("GET /docs/{id}/live", live(streamHandler))
//
// # Client IP
//
// The client IP (recorded as meta only with [WithMetaIP]) is RemoteAddr's,
// unless [WithTrustedProxies] names the one header the application's
// proxies set and the proxies' networks. Then the header is walked right to
// left while each hop is a trusted proxy, and the first hop that is not is
// the client. Garbage, zone IDs and unparseable hops stop the walk at the
// last trusted hop, so a client never gets to choose the IP recorded for it.
// IPv4-mapped IPv6 addresses are read as the IPv4 address they carry. The
// walk's cost does not grow with the hops a client packs into the header
// beyond reading them: it allocates nothing for them.
//
// # Counting
//
// WithCounters gives Track and Hold a [Counters] to count their requests
// in: recorded, skipped, anonymous, refused for their status, and holds
// started and open. The presenceprom module exports them as Prometheus
// metrics.
//
// # Panics
//
// Track and Hold panic when built with a nil Recorder or
// IdentityFunc, an invalid regular expression or an unknown proxy header,
// like regexp.MustCompile: these are mistakes in the program, found at
// start-up. They recover nothing at request time: a panic in the
// IdentityFunc (which Track runs after the handler) propagates like a
// handler's own panic, which net/http logs before dropping the connection.
// Nothing is recorded for that request, and a response already sent
// stands. Hold releases its hold when the handler panics.
//
// # Frameworks
//
// Track returns a func(http.Handler) http.Handler, which http.ServeMux
// users wrap around the mux, and chi's Router.Use and gorilla/mux's
// Router.Use take as is. For echo, use echo.WrapMiddleware(track); for gin,
// wrap the engine: http.ListenAndServe(addr, track(ginEngine)).
package middleware
