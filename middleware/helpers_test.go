package middleware_test

import (
	"context"
	"net/http"
)

func contextWith(r *http.Request, v any) context.Context {
	return context.WithValue(r.Context(), ctxKey{}, v)
}
