package redispresence

import (
	"context"
	"fmt"
)

// bounded runs f under the Store's timeout (WithTimeout) and ctx, and
// returns when either ends, whether or not the client was made with
// ContextTimeoutEnabled. Without it, go-redis bounds a network wait by its
// own read timeout (3s by default, and a retry after it), not by the
// context: then f runs on a worker goroutine (spawn), which bounded stops
// waiting for when ctx ends; the worker finishes f when go-redis gives up. f must write nothing its caller reads after an error: bounded
// returns f's results only when f has returned.
func bounded[T any](s *Store, ctx context.Context, f func(context.Context) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.timeout)
	defer cancel() // when the caller returns: the goroutine's f has, or ctx had ended
	if s.ctxTimeouts {
		return f(ctx)
	}
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	s.spawn(func() {
		v, err := f(ctx)
		done <- result{v, err}
	})
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
		select {
		case r := <-done: // f ended too: its answer, not the deadline
			return r.v, r.err
		default:
		}
		var zero T
		return zero, fmt.Errorf("redispresence: %w", context.Cause(ctx))
	}
}

// bounded0 and bounded2 are bounded for a function of no result and of
// two, besides the error.
func bounded0(s *Store, ctx context.Context, f func(context.Context) error) error {
	_, err := bounded(s, ctx, func(ctx context.Context) (struct{}, error) { return struct{}{}, f(ctx) })
	return err
}

func bounded2[A, B any](s *Store, ctx context.Context, f func(context.Context) (A, B, error)) (A, B, error) {
	type pair struct {
		a A
		b B
	}
	p, err := bounded(s, ctx, func(ctx context.Context) (pair, error) {
		a, b, err := f(ctx)
		return pair{a, b}, err
	})
	return p.a, p.b, err
}

// spawn runs f on an idle worker goroutine, or a new one. Workers wait for
// the next call until the Store closes: a new goroutine per call would
// grow its stack through go-redis's calls each time, which cost more than
// the query's own work on loopback.
func (s *Store) spawn(f func()) {
	select {
	case s.work <- f:
	default:
		go s.worker(f)
	}
}

func (s *Store) worker(f func()) {
	for {
		f()
		select {
		case f = <-s.work:
		case <-s.ctx.Done():
			return
		}
	}
}
