// Package presencehttp serves a JSON API and an admin dashboard over any
// [presence.Backend] (the in-memory engine's, or the Redis store), closed
// to everyone the application does not authorize.
//
//	h := presencehttp.Handler(users.Backend(), isAdmin,
//		presencehttp.WithHistory(history))
//	mux.Handle("/admin/presence/", http.StripPrefix("/admin/presence", h))
//
// # Endpoints
//
// Paths are relative to where the handler is mounted (strip the prefix with
// http.StripPrefix, as above). All answers are JSON except the page itself,
// and none may be cached.
//
//	GET /                      the dashboard (HTML, with /app.js and /app.css)
//	GET /api/counts            {"now":..., "counts":[{"window":"5m0s","seconds":300,"count":12}, ...]}
//	                           ?windows=1m,5m  (default: WithWindows, else 1m,5m,15m,1h,24h)
//	GET /api/users             {"users":[{"id":..., "last_seen":..., "meta":...}], "next":"<cursor>"}
//	                           ?window=15m (default) &limit=50 (1..500) &cursor=<next of the previous page>
//	GET /api/user?id=ID        {"id":..., "last_seen":..., "meta":...}, or 404
//	GET /api/history           {"every_seconds":10, "points":[{"t":..., "count":...}]}, oldest first
//	GET /api/rooms             {"rooms":[{"room":..., "count":...}]}, busiest first
//	                           ?window=15m (default) &limit=50 (1..500)
//	GET /api/events            a text/event-stream of online, offline, join, leave, update and overflow events;
//	                           ?room=NAME keeps that room's (and overflow); 404 for a backend made
//	                           without events (presence.ErrNoEvents)
//
// /api/events writes each event as "id: <seq>", "event: <kind>" and
// "data: {"kind":..., "id":..., "room":..., "at":..., "seq":...}", and a
// ": heartbeat" comment every [WithHeartbeat] while quiet. A client that
// reconnects with Last-Event-ID gets what it missed from the last
// [WithEventReplay] events; one that missed more (or sent an id the
// handler never made) gets an overflow event and should re-read the lists.
// One subscription per Handler serves every stream, so a stream costs a
// goroutine and its connection, not a copy of the events. The dashboard
// follows /api/events and refreshes on each event, polling every 30
// seconds besides (every 5 without the stream).
//
// With ?room=NAME, /api/counts, /api/users and /api/user answer for that
// room's members, each at its last time in the room (a name that is not 1
// to 512 bytes of UTF-8 without NUL gets 400). A cursor of another room's
// walk gets 400. A user held now has "held": true.
//
// Meta (which may hold client IPs) is only included with [WithMeta]. Bad
// parameters get 400 with {"error": "..."}; a failing backend (a remote
// one that is down) gets 503.
//
// # Access
//
// The authorize function is required and runs before anything else: a
// request it refuses gets 403 with {"error":"forbidden"} and nothing about
// the users, not even how many there are.
//
// # Room streams for end users
//
// [Live] is the other handler: not for admins but for every viewer of a
// page, "Alice and Bob are viewing this document". Its authorize function
// says who the viewer is and whether it may see and join the room; its
// stream holds the viewer in the room with its data and sends the room's
// members and their changes; its browser client (client.js, an ES module)
// turns them into onChange(members) calls:
//
//	mux.Handle("/live/", http.StripPrefix("/live", presencehttp.Live(b, viewer)))
//
//	import { join } from "/live/client.js";
//	const room = join("/live/doc-42", { data: { name: "Alice" }, onChange: render });
//	room.update({ name: "Alice", typing: true });
package presencehttp

import (
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/onlinenow/presence"
)

// Option configures Handler.
type Option func(*config)

type config struct {
	windows   []time.Duration
	meta      bool
	history   *History
	maxLimit  int
	replay    int
	heartbeat time.Duration
	now       func() time.Time
	// Live's
	coalesce   time.Duration
	maxMembers int
}

// WithWindows sets the windows /api/counts reports by default.
func WithWindows(windows ...time.Duration) Option {
	return func(c *config) { c.windows = windows }
}

// WithMeta includes each user's meta in the answers. Meta may hold client
// IPs and user agents: personal data.
func WithMeta() Option { return func(c *config) { c.meta = true } }

// WithHistory serves h's samples at /api/history, for the dashboard's chart.
func WithHistory(h *History) Option { return func(c *config) { c.history = h } }

// WithMaxPageSize sets the hard cap on the users /api/users returns in one
// page, whatever its limit parameter asks (default 500). It caps the
// default page size of 50 too.
func WithMaxPageSize(n int) Option { return func(c *config) { c.maxLimit = n } }

// WithClock sets the clock of the "now" the answers report and of the
// stream's own events; nil selects time.Now. Windows are measured by the
// backend's clock.
func WithClock(now func() time.Time) Option { return func(c *config) { c.now = now } }

var defaultWindows = []time.Duration{time.Minute, 5 * time.Minute, 15 * time.Minute, time.Hour, 24 * time.Hour}

const (
	defaultLimit  = 50
	maxWindowsArg = 16
	maxWindow     = 366 * 24 * time.Hour
	// Longest parameters parsed. Anything longer is refused before it is
	// parsed, split or quoted in an error, so that a long query string
	// costs no allocation in proportion to its length.
	maxWindowLen = 32 // "8784h0m0s" and generous spellings of it
	maxLimitLen  = 20 // any int64
)

//go:embed dashboard
var assets embed.FS

type server struct {
	config
	b         presence.Backend
	authorize func(*http.Request) bool
	mux       *http.ServeMux
	hub       *hub
}

// Handler returns the API and dashboard over b. authorize decides who may
// see them; it is required, and Handler panics if it is nil.
func Handler(b presence.Backend, authorize func(*http.Request) bool, opts ...Option) http.Handler {
	if b == nil {
		panic("presencehttp: Handler: nil Backend")
	}
	if authorize == nil {
		panic("presencehttp: Handler: nil authorize: say who may see who is online")
	}
	s := &server{b: b, authorize: authorize, mux: http.NewServeMux()}
	for _, o := range opts {
		o(&s.config)
	}
	if len(s.windows) == 0 {
		s.windows = defaultWindows
	}
	if s.maxLimit <= 0 {
		s.maxLimit = 500
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.replay <= 0 {
		s.replay = defaultReplay
	}
	if s.heartbeat <= 0 {
		s.heartbeat = defaultHeartbeat
	}
	s.hub = newHub(b, s.replay)
	s.mux.HandleFunc("GET /{$}", s.asset("dashboard/index.html", "text/html; charset=utf-8"))
	s.mux.HandleFunc("GET /app.js", s.asset("dashboard/app.js", "text/javascript; charset=utf-8"))
	s.mux.HandleFunc("GET /app.css", s.asset("dashboard/app.css", "text/css; charset=utf-8"))
	s.mux.HandleFunc("GET /api/counts", s.counts)
	s.mux.HandleFunc("GET /api/users", s.users)
	s.mux.HandleFunc("GET /api/user", s.user)
	s.mux.HandleFunc("GET /api/history", s.historyPoints)
	s.mux.HandleFunc("GET /api/rooms", s.rooms)
	s.mux.HandleFunc("GET /api/events", s.events)
	return s
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if !s.authorize(r) {
		writeJSON(w, http.StatusForbidden, errorBody{"forbidden"})
		return
	}
	s.mux.ServeHTTP(w, r)
}

func (s *server) asset(name, contentType string) http.HandlerFunc {
	body, err := assets.ReadFile(name)
	if err != nil {
		panic(err) // embedded at build time
	}
	return func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", contentType)
		h.Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
		h.Set("Referrer-Policy", "no-referrer")
		w.Write(body)
	}
}

type errorBody struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func badRequest(w http.ResponseWriter, format string, args ...any) {
	writeJSON(w, http.StatusBadRequest, errorBody{fmt.Sprintf(format, args...)})
}

// unavailable answers for a backend that failed. Its error may describe the
// backend's internals (addresses, commands), so it is not passed on.
func unavailable(w http.ResponseWriter) {
	writeJSON(w, http.StatusServiceUnavailable, errorBody{"presence backend unavailable"})
}

// parseWindow reads a window such as "15m" or "90s": a positive Go
// duration of at most a year.
func parseWindow(s string) (time.Duration, error) {
	if len(s) > maxWindowLen {
		return 0, fmt.Errorf("window of %d bytes: want a positive duration such as 15m, at most %v", len(s), maxWindow)
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 || d > maxWindow {
		return 0, fmt.Errorf("window %q: want a positive duration such as 15m, at most %v", s, maxWindow)
	}
	return d, nil
}

type countJSON struct {
	Window  string `json:"window"`
	Seconds int64  `json:"seconds"`
	Count   int    `json:"count"`
}

func (s *server) counts(w http.ResponseWriter, r *http.Request) {
	windows := s.windows
	if arg := r.URL.Query().Get("windows"); arg != "" {
		parts := strings.SplitN(arg, ",", maxWindowsArg+1)
		if len(parts) > maxWindowsArg {
			badRequest(w, "at most %d windows", maxWindowsArg)
			return
		}
		windows = nil
		for _, p := range parts {
			d, err := parseWindow(p)
			if err != nil {
				badRequest(w, "%v", err)
				return
			}
			windows = append(windows, d)
		}
	}
	q, ok := s.querier(w, r)
	if !ok {
		return
	}
	out := struct {
		Now    time.Time   `json:"now"`
		Counts []countJSON `json:"counts"`
	}{Now: s.now().UTC()}
	for _, d := range windows {
		n, err := q.Count(r.Context(), d)
		if err != nil {
			unavailable(w)
			return
		}
		out.Counts = append(out.Counts, countJSON{Window: d.String(), Seconds: int64(d / time.Second), Count: n})
	}
	writeJSON(w, http.StatusOK, out)
}

type userJSON struct {
	ID       string    `json:"id"`
	LastSeen time.Time `json:"last_seen"`
	Meta     string    `json:"meta,omitempty"`
	Held     bool      `json:"held,omitempty"`
}

func (s *server) userOf(a presence.Activity) userJSON {
	u := userJSON{ID: a.ID, LastSeen: a.LastSeen.UTC(), Held: a.Held}
	if s.meta {
		u.Meta = a.Meta
	}
	return u
}

// querier returns the Querier a request asks: a room's, with the room
// parameter, else the backend's. It answers 400 itself for a bad room
// name.
func (s *server) querier(w http.ResponseWriter, r *http.Request) (presence.Querier, bool) {
	if !r.URL.Query().Has("room") {
		return s.b, true
	}
	name := r.URL.Query().Get("room")
	if !presence.ValidRoom(name) {
		badRequest(w, "room: want 1 to %d bytes of UTF-8 without NUL", presence.MaxIDLen)
		return nil, false
	}
	return s.b.Room(name), true
}

// windowAndLimit reads the window (default 15m) and limit (default 50,
// capped by WithMaxPageSize) parameters, answering 400 itself if bad.
func (s *server) windowAndLimit(w http.ResponseWriter, r *http.Request) (time.Duration, int, bool) {
	q := r.URL.Query()
	window := 15 * time.Minute
	if arg := q.Get("window"); arg != "" {
		d, err := parseWindow(arg)
		if err != nil {
			badRequest(w, "%v", err)
			return 0, 0, false
		}
		window = d
	}
	limit := min(defaultLimit, s.maxLimit)
	if arg := q.Get("limit"); arg != "" {
		n, err := 0, strconv.ErrRange
		if len(arg) <= maxLimitLen {
			n, err = strconv.Atoi(arg)
		}
		if err != nil || n <= 0 {
			badRequest(w, "limit %.20q: want a whole number from 1 to %d", arg, s.maxLimit)
			return 0, 0, false
		}
		limit = min(n, s.maxLimit)
	}
	return window, limit, true
}

type roomJSON struct {
	Room  string `json:"room"`
	Count int    `json:"count"`
}

func (s *server) rooms(w http.ResponseWriter, r *http.Request) {
	window, limit, ok := s.windowAndLimit(w, r)
	if !ok {
		return
	}
	rooms, err := s.b.Rooms(r.Context(), window, limit)
	if err != nil {
		unavailable(w)
		return
	}
	out := struct {
		Rooms []roomJSON `json:"rooms"`
	}{Rooms: make([]roomJSON, 0, len(rooms))}
	for _, rc := range rooms {
		out.Rooms = append(out.Rooms, roomJSON{rc.Room, rc.Count})
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *server) users(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	window, limit, ok := s.windowAndLimit(w, r)
	if !ok {
		return
	}
	from, ok := s.querier(w, r)
	if !ok {
		return
	}
	page, next, err := from.Page(r.Context(), window, q.Get("cursor"), limit)
	if errors.Is(err, presence.ErrInvalidCursor) {
		badRequest(w, "cursor: not one this server gave out")
		return
	}
	if err != nil {
		unavailable(w)
		return
	}
	out := struct {
		Users []userJSON `json:"users"`
		Next  string     `json:"next"`
	}{Users: make([]userJSON, 0, len(page)), Next: next}
	for _, a := range page {
		out.Users = append(out.Users, s.userOf(a))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *server) user(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("id")
	if id == "" || len(id) > presence.MaxIDLen {
		badRequest(w, "id: want 1 to %d bytes", presence.MaxIDLen)
		return
	}
	q, ok := s.querier(w, r)
	if !ok {
		return
	}
	a, ok, err := q.Get(r.Context(), id)
	if err != nil {
		unavailable(w)
		return
	}
	if !ok {
		writeJSON(w, http.StatusNotFound, errorBody{"no such user"})
		return
	}
	writeJSON(w, http.StatusOK, s.userOf(a))
}

func (s *server) historyPoints(w http.ResponseWriter, r *http.Request) {
	out := struct {
		Every  float64 `json:"every_seconds"`
		Window float64 `json:"window_seconds"`
		Points []Point `json:"points"`
	}{Points: []Point{}}
	if h := s.history; h != nil {
		out.Every, out.Window = h.every.Seconds(), h.window.Seconds()
		out.Points = h.Points()
	}
	writeJSON(w, http.StatusOK, out)
}
