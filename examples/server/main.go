// Command server is a runnable web server wiring the whole library: the
// middleware records signed-in users and anonymous visitors in two engines,
// the users' engine is snapshotted to disk, and the dashboard is served
// under /admin/presence/ to whoever knows the admin token. /live/NAME is a
// live page: through presencehttp.Live's browser client, its room stream
// (/live/NAME/events) holds the viewer in the room NAME for as long as it
// is open, and shows the avatars of who else is viewing, and their status
// text, live.
// /admin/metrics serves Prometheus metrics of both engines, the
// middleware and the Go runtime, to the same admin (the cookie, or
// "Authorization: Bearer TOKEN" for a scraper); -metrics-addr serves them
// on a listener of their own instead, without the token, for a network
// only the scraper reaches.
//
// With -redis ADDR the users are kept in Redis at that address instead of
// in memory (redispresence, with events): the same server, dashboard,
// rooms and live pages included, and two servers on one Redis show one
// view. Guests stay in memory either way.
//
//	PRESENCE_ADMIN_TOKEN=s3cret go run ./examples/server -addr 127.0.0.1:8080
//	PRESENCE_ADMIN_TOKEN=s3cret go run ./examples/server -addr 127.0.0.1:8081 -redis 127.0.0.1:6379
//
// Then open http://127.0.0.1:8080/login?user=alice to sign in as alice (a
// demo login: no password), browse a few pages, open
// http://127.0.0.1:8080/live/doc-1 in two browsers signed in as two users,
// and http://127.0.0.1:8080/admin/login?token=s3cret for the dashboard.
package main

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/onlinenow/presence"
	"github.com/onlinenow/presence/middleware"
	"github.com/onlinenow/presence/presencehttp"
	"github.com/onlinenow/presence/presenceprom"
	"github.com/onlinenow/presence/presenceprom/redisprom"
	"github.com/onlinenow/presence/redispresence"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "address to listen on")
	data := flag.String("data", os.TempDir(), "directory for the users' snapshot")
	metricsAddr := flag.String("metrics-addr", "", "serve /metrics on this address, without the admin token, instead of /admin/metrics")
	redisAddr := flag.String("redis", "", "keep the users in Redis at this address (host:port) instead of in memory")
	flag.Parse()

	token := os.Getenv("PRESENCE_ADMIN_TOKEN")
	if token == "" {
		log.Print("PRESENCE_ADMIN_TOKEN is not set: the dashboard refuses everyone")
	}
	users, usersMetrics, err := openUsers(*redisAddr, *data)
	if err != nil {
		log.Fatal(err)
	}
	guests := presence.New(presence.WithRetention(24*time.Hour), presence.WithMaxUsers(1_000_000))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hist := presencehttp.NewHistory(users)
	go hist.Run(ctx)

	app, metrics := newApp(users, guests, hist, token, randomKey(), *metricsAddr == "", usersMetrics)
	srv := &http.Server{Addr: *addr, Handler: app}
	if *metricsAddr != "" {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", metrics)
		ms := &http.Server{Addr: *metricsAddr, Handler: mux}
		go func() { log.Print(ms.ListenAndServe()) }()
		defer ms.Close()
	}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shutdown)
	}()
	log.Printf("listening on http://%s", *addr)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
	closing, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := users.Close(closing); err != nil { // the last snapshot, or flush
		log.Fatal(err)
	}
}

// openUsers returns the users' backend, and its metrics: in memory with a
// snapshot in dir, or with redisAddr in Redis.
func openUsers(redisAddr, dir string) (presence.Backend, prometheus.Collector, error) {
	labels := presenceprom.WithConstLabels(prometheus.Labels{"engine": "users"})
	if redisAddr == "" {
		e, err := presence.Open(filepath.Join(dir, "presence-users.snap"),
			presence.WithRetention(30*24*time.Hour),
			presence.WithLogger(slog.Default())) // failed saves, with the path
		if err != nil {
			return nil, nil, err
		}
		return e.Backend(), presenceprom.NewCollector(e, labels,
			presenceprom.WithWindow("5m", 5*time.Minute), presenceprom.WithWindow("1h", time.Hour)), nil
	}
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	s, err := redispresence.New(rdb, redispresence.WithEvents(), redispresence.WithRetention(30*24*time.Hour),
		redispresence.WithLogger(slog.Default()))
	if err != nil {
		return nil, nil, err
	}
	return s, redisprom.NewCollector(s, labels), nil
}

func randomKey() []byte {
	k := make([]byte, 32)
	rand.Read(k)
	return k
}

type userKey struct{}

// newApp wires the site, and returns it and the Prometheus handler; key
// signs the demo login cookie. With adminMetrics the site serves the
// metrics at /admin/metrics to the admin; usersMetrics are the users'
// backend's.
func newApp(users presence.Backend, guests *presence.Engine, hist *presencehttp.History, token string, key []byte,
	adminMetrics bool, usersMetrics prometheus.Collector) (site, metrics http.Handler) {
	counters := middleware.NewCounters()
	reg := prometheus.NewRegistry()
	reg.MustRegister(usersMetrics,
		presenceprom.NewCollector(guests, presenceprom.WithConstLabels(prometheus.Labels{"engine": "guests"}),
			presenceprom.WithWindow("5m", 5*time.Minute), presenceprom.WithWindow("1h", time.Hour)),
		presenceprom.NewMiddlewareCollector(counters),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	metrics = promhttp.HandlerFor(reg, promhttp.HandlerOpts{})

	pages := http.NewServeMux()
	pages.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		if u, ok := r.Context().Value(userKey{}).(string); ok {
			// The room is the route: Track records this request in it after the handler.
			here, err1 := users.Room(r.Pattern).Count(r.Context(), 5*time.Minute)
			online, err2 := users.Count(r.Context(), 5*time.Minute)
			if err := errors.Join(err1, err2); err != nil {
				http.Error(w, "presence unavailable", http.StatusServiceUnavailable)
				return
			}
			fmt.Fprintf(w, "Hello, %s. %d users and %d guests online; %d users on this page.\n",
				u, online, guests.Count(5*time.Minute), here)
			return
		}
		fmt.Fprintf(w, "Hello, guest. Sign in at /login?user=NAME. %d guests online.\n", guests.Count(5*time.Minute))
	})
	pages.HandleFunc("GET /login", func(w http.ResponseWriter, r *http.Request) {
		name := r.URL.Query().Get("user")
		if name == "" || len(name) > 64 || strings.ContainsAny(name, ".;, ") {
			http.Error(w, "want ?user=NAME", http.StatusBadRequest)
			return
		}
		http.SetCookie(w, &http.Cookie{Name: "user", Value: sign(key, name), Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode})
		http.Redirect(w, r, "/", http.StatusSeeOther)
	})
	pages.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	// The live page: it joins its room through the browser client of
	// presencehttp.Live, served below with the room streams.
	pages.HandleFunc("GET /live/{doc}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, livePage)
	})

	// Signed-in users go to users, everyone else to guests; users are also
	// recorded in the room of the route they asked for.
	trackUsers := middleware.Track(users, middleware.FromContext(userKey{}),
		middleware.WithSkipPrefix("/healthz", "/admin/"), middleware.WithMetaUserAgent(),
		middleware.WithRoom(middleware.RoutePattern), middleware.WithCounters(counters))
	assign, visitor := middleware.Anonymous("visitor")
	trackGuests := middleware.Track(guests, visitor, middleware.WithSkipPrefix("/healthz", "/admin/"),
		middleware.WithCounters(counters))
	tracked := trackUsers(pages)
	guestSite := assign(trackGuests(pages))
	page := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := r.Context().Value(userKey{}).(string); ok {
			tracked.ServeHTTP(w, r)
		} else {
			guestSite.ServeHTTP(w, r)
		}
	})

	isAdmin := func(r *http.Request) bool {
		given := ""
		if c, err := r.Cookie("presence_admin"); err == nil {
			given = c.Value
		} else if b, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
			given = b // a scraper's bearer_token
		}
		return token != "" && given != "" && subtle.ConstantTimeCompare([]byte(given), []byte(token)) == 1
	}
	dashboard := presencehttp.Handler(users, isAdmin,
		presencehttp.WithHistory(hist), presencehttp.WithMeta())

	// The room streams of the live pages: signed-in users may view and
	// join any of them. (An application would check its own ACL here.)
	live := authenticate(key, http.StripPrefix("/live", presencehttp.Live(users,
		func(r *http.Request, room string) (string, bool) {
			u, ok := r.Context().Value(userKey{}).(string)
			return u, ok
		})))

	root := http.NewServeMux()
	root.Handle("/", authenticate(key, page))
	root.Handle("GET /live/{doc}/events", live)
	root.Handle("POST /live/{doc}/data", live)
	root.Handle("GET /live/client.js", live)
	root.Handle("/admin/presence/", http.StripPrefix("/admin/presence", dashboard))
	if adminMetrics {
		root.Handle("GET /admin/metrics", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !isAdmin(r) {
				http.Error(w, "forbidden", http.StatusForbidden)
				return
			}
			metrics.ServeHTTP(w, r)
		}))
	}
	root.HandleFunc("GET /admin/login", func(w http.ResponseWriter, r *http.Request) {
		t := r.URL.Query().Get("token")
		if token == "" || subtle.ConstantTimeCompare([]byte(t), []byte(token)) != 1 {
			http.Error(w, "forbidden", http.StatusForbidden)
			return
		}
		http.SetCookie(w, &http.Cookie{Name: "presence_admin", Value: token, Path: "/admin/",
			HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
		http.Redirect(w, r, "/admin/presence/", http.StatusSeeOther)
	})
	return root, metrics
}

// livePage shows the avatars of who is viewing, live, and lets the viewer
// set a status text that every other viewer sees. Names are set as text.
const livePage = `<!doctype html>
<meta charset="utf-8">
<title>Live</title>
<style>
body { font: 15px system-ui, sans-serif; margin: 2em; }
#viewers { list-style: none; padding: 0; display: flex; gap: 1em; flex-wrap: wrap; }
.avatar { display: flex; flex-direction: column; align-items: center; width: 7em; }
.face { width: 3em; height: 3em; border-radius: 50%; color: #fff; display: grid; place-items: center; font-weight: 600; }
.status { color: #555; font-size: 85%; text-align: center; }
</style>
<h1>Who is viewing this page</h1>
<ul id="viewers"></ul>
<form id="status-form"><input id="status" placeholder="What are you doing?" maxlength="80"> <button>Set</button></form>
<p id="state">connecting</p>
<script type="module">
import { join } from "/live/client.js";
const doc = location.pathname.split("/").pop();
const list = document.getElementById("viewers");
const color = (id) => { let h = 0; for (const c of id) h = (h * 31 + c.charCodeAt(0)) % 360; return "hsl(" + h + " 55% 45%)"; };
const room = join("/live/" + doc, {
  data: { status: "" },
  onChange(members, self) {
    list.replaceChildren(...members.map((m) => {
      const li = document.createElement("li");
      li.className = "avatar";
      li.dataset.id = m.id;
      li.dataset.status = (m.data && m.data.status) || "";
      const face = document.createElement("span");
      face.className = "face";
      face.style.background = color(m.id);
      face.textContent = m.id.slice(0, 2).toUpperCase();
      const name = document.createElement("span");
      name.textContent = m.id === self ? m.id + " (you)" : m.id;
      const status = document.createElement("span");
      status.className = "status";
      status.textContent = li.dataset.status;
      li.append(face, name, status);
      return li;
    }));
  },
  onCount(n) { list.textContent = n + " viewers"; },
  onStatus(s) { document.getElementById("state").textContent = s; document.body.dataset.live = s === "live"; },
});
document.getElementById("status-form").addEventListener("submit", (e) => {
  e.preventDefault();
  room.update({ status: document.getElementById("status").value });
});
</script>
`

// authenticate puts the signed-in user's name in the request context.
func authenticate(key []byte, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c, err := r.Cookie("user"); err == nil {
			if name, ok := verify(key, c.Value); ok {
				r = r.WithContext(context.WithValue(r.Context(), userKey{}, name))
			}
		}
		next.ServeHTTP(w, r)
	})
}

func sign(key []byte, name string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(name))
	return name + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func verify(key []byte, value string) (string, bool) {
	name, _, ok := strings.Cut(value, ".")
	return name, ok && hmac.Equal([]byte(sign(key, name)), []byte(value))
}
