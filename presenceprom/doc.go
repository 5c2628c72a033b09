// Package presenceprom exports the presence engine and its HTTP middleware
// as Prometheus metrics (and, through its module redisprom, the Redis
// backend), in the style of
// client_golang's own collectors package: each New*Collector returns a
// [prometheus.Collector] that reads the part's counters when scraped and
// that the caller registers on a registry of its choice. Nothing is
// registered on the global registry.
//
// # Usage
//
//	reg := prometheus.NewRegistry()
//	reg.MustRegister(presenceprom.NewCollector(engine,
//		presenceprom.WithWindow("15m", 15*time.Minute)))
//	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
//
// # Cost
//
// A scrape reads what [presence.Engine.Stats] keeps (each shard's counters
// under its read lock) and one slot-counter sum per window: O(shards x
// windows), not O(users) or O(rooms), and the allocations of the metrics
// themselves. The engine counts touches only when made with
// [presence.WithTouchCount], since a count costs its hot path a third
// (BENCHMARKS.md gives the cost); the request rate comes from the
// middleware's counters by default ([NewMiddlewareCollector]).
// The Redis collector (redisprom.NewCollector) calls the Store's Stats,
// which walks its write buffer (at most WithMaxBuffered users).
//
// # Metrics
//
// The README of this module lists every metric, its type and labels. All
// names start with the namespace ([WithNamespace], "presence" by default);
// the middleware's continue with "_http", the Redis backend's with
// "_redis". Every metric is in every scrape, but for the time of the last
// good snapshot (and its size) and of the last good flush, which appear
// after the first.
package presenceprom
