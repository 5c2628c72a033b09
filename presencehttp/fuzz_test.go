package presencehttp_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/onlinenow/presence/presencehttp"
)

// FuzzQuery sends hostile query strings to the API's endpoints. Whatever
// the query, the answer is 200, 400 or 404 with a JSON body of bounded
// size, never a panic or a 5xx; a page holds at most the page cap, newest
// first, each user once.
func FuzzQuery(f *testing.F) {
	for _, seed := range []string{
		"", "windows=1m,5m", "windows=90s,,2m", "windows=1m%2C5m", "window=15m&limit=3",
		"limit=500", "limit=+7", "limit=0x10", "window=1h&limit=2&cursor=", "cursor=forged",
		"id=user-3", "id=%00", "id=user-0&id=user-1", "window=-1s", "window=1e3s", "a=1&&&b",
		"room=doc", "room=doc&id=user-2", "room=%FF", "room=", "room=doc&room=chat", "room=doc&limit=2&cursor=",
	} {
		for path := range byte(5) {
			f.Add(path, seed)
		}
	}
	const maxPage = 20
	e := populated()
	for i := range 40 {
		e.TouchInAt("doc", fmt.Sprint("user-", i), t0.Add(-time.Duration(i)*time.Second))
	}
	h := handler(e, presencehttp.WithMaxPageSize(maxPage))
	paths := []string{"/api/counts", "/api/users", "/api/user", "/api/history", "/api/rooms"}
	f.Fuzz(func(t *testing.T, path byte, query string) {
		r := httptest.NewRequest("GET", paths[int(path)%len(paths)], nil)
		r.URL.RawQuery = query
		r.Header.Set("X-Admin", "yes")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		switch w.Code {
		case http.StatusOK, http.StatusBadRequest, http.StatusNotFound:
		default:
			t.Fatalf("%s?%q: status %d", r.URL.Path, query, w.Code)
		}
		if w.Body.Len() > 16<<10 {
			t.Fatalf("%s?%q: %d bytes", r.URL.Path, query, w.Body.Len())
		}
		var body struct {
			Error string `json:"error"`
			Users []struct {
				ID       string    `json:"id"`
				LastSeen time.Time `json:"last_seen"`
			} `json:"users"`
		}
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
			t.Fatalf("%s?%q: %v: %s", r.URL.Path, query, err, w.Body.Bytes())
		}
		if (w.Code != http.StatusOK) != (body.Error != "") {
			t.Fatalf("%s?%q: status %d with error %q", r.URL.Path, query, w.Code, body.Error)
		}
		if len(body.Users) > maxPage {
			t.Fatalf("%s?%q: page of %d", r.URL.Path, query, len(body.Users))
		}
		seen := map[string]bool{}
		for i, u := range body.Users {
			if seen[u.ID] || i > 0 && u.LastSeen.After(body.Users[i-1].LastSeen) {
				t.Fatalf("%s?%q: user %d (%s) repeated or out of order", r.URL.Path, query, i, u.ID)
			}
			seen[u.ID] = true
		}
	})
}
