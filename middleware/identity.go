package middleware

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"reflect"
	"strconv"
	"time"
)

// FromContext identifies a request by the value an authentication
// middleware stored in its context under key: a string, a fmt.Stringer or
// any integer type (named ones too). Other types, nil and the empty string
// do not identify.
// Integers are formatted on each request, which allocates for values >= 100.
func FromContext(key any) IdentityFunc {
	return func(r *http.Request) (string, bool) {
		return identityOf(r.Context().Value(key))
	}
}

func identityOf(v any) (string, bool) {
	var id string
	switch v := v.(type) {
	case string:
		id = v
	case fmt.Stringer:
		id = v.String()
	default: // integers, named integer types (type UserID int64) included
		switch rv := reflect.ValueOf(v); rv.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			id = strconv.FormatInt(rv.Int(), 10)
		case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			id = strconv.FormatUint(rv.Uint(), 10)
		}
	}
	return id, id != ""
}

// FromHeader identifies a request by a request header. Only use it behind a
// proxy that sets this header itself and drops any value a client sent:
// otherwise every client can claim to be anyone.
func FromHeader(name string) IdentityFunc {
	name = http.CanonicalHeaderKey(name)
	return func(r *http.Request) (string, bool) {
		id := r.Header.Get(name)
		return id, id != ""
	}
}

// FromCookie identifies a request by a cookie's value. Only use it for a
// cookie whose value the application can trust, such as one it signed: a
// client can send any cookie it likes.
func FromCookie(name string) IdentityFunc {
	return func(r *http.Request) (string, bool) {
		c, err := r.Cookie(name)
		if err != nil || c.Value == "" {
			return "", false
		}
		return c.Value, true
	}
}

// visitorIDLen is the length of a visitor ID: 16 random bytes, base64url.
const visitorIDLen = 22

type visitorKey struct{ name string }

// Anonymous gives every visitor a random, unguessable visitor ID in the
// cookie cookieName (HttpOnly, SameSite=Lax, Secure on TLS, for a year), so
// that guests can be counted, typically in an engine of their own. It
// returns the middleware that hands out the cookie, which must run before
// Track, and the IdentityFunc for Track:
//
//	assign, visitor := middleware.Anonymous("visitor")
//	h = assign(middleware.Track(guests, visitor)(h))
//
// A cookie value that is not a well-formed visitor ID is replaced by a new
// one. Visitors choose their own cookies, so a client can make up as many
// IDs as it likes: cap the engine (presence.WithMaxUsers).
func Anonymous(cookieName string) (assign func(http.Handler) http.Handler, identify IdentityFunc) {
	key := visitorKey{cookieName}
	assign = func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if c, err := r.Cookie(cookieName); err == nil && validVisitorID(c.Value) {
				next.ServeHTTP(w, r)
				return
			}
			id := newVisitorID()
			http.SetCookie(w, &http.Cookie{
				Name:     cookieName,
				Value:    id,
				Path:     "/",
				MaxAge:   int((365 * 24 * time.Hour).Seconds()),
				HttpOnly: true,
				Secure:   r.TLS != nil,
				SameSite: http.SameSiteLaxMode,
			})
			// This request did not carry the cookie yet: pass the new ID on.
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), key, id)))
		})
	}
	identify = func(r *http.Request) (string, bool) {
		if id, ok := r.Context().Value(key).(string); ok {
			return id, true
		}
		if c, err := r.Cookie(cookieName); err == nil && validVisitorID(c.Value) {
			return c.Value, true
		}
		return "", false
	}
	return assign, identify
}

func newVisitorID() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand documents it panics instead)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func validVisitorID(s string) bool {
	if len(s) != visitorIDLen {
		return false
	}
	for i := range len(s) {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
