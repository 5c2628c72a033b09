// Command bench runs a presence workload against this library and against
// what users would pick instead, side by side, and prints a report.
//
//	go run ./bench                         # 1M users, Zipf, all peers
//	go run ./bench -users 10000000 -dist uniform -duration 10s
//	go run ./bench -peers engine,naive -json out.json
//
// Peers: "engine" (this library), "naive" (a mutex around a map, with a scan
// and a sort per query), "redis" (a ZADD per request into one sorted set, as
// django-active-users does, each worker with its own pipeline), and
// "redis-backend" (this library's Redis backend, redispresence: a local
// buffer flushed every second, one ZADD member per changed user). With
// -redis auto the program starts redis-server from PATH on a free loopback
// port, without persistence, and stops it afterwards; without one, the
// redis row says why it was skipped.
//
// With -nodes N it runs the fleet instead: N redispresence Stores in one
// process, each with its own Redis client, against one Redis, with rooms
// and events, and prints touches/s per node, Redis writes per touch, how
// far the nodes' counts disagree and the event latency.
//
//	go run ./bench -nodes 8 -duration 10s
//
// Then, unless turned off: rooms against centrifuge's presence manager
// (-rooms), and events (-events): the engine's touches/s with no
// subscriber and with 4, and the rate at which a burst of every user
// going offline at once reaches the subscribers.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"time"
)

type params struct {
	Users      int           `json:"users"`
	Dist       string        `json:"dist"`
	Skew       float64       `json:"skew"`
	Workers    int           `json:"workers"`
	Duration   time.Duration `json:"duration_ns"`
	Ops        int64         `json:"ops"`
	Seed       uint64        `json:"seed"`
	QueryEvery int           `json:"query_every"`
	QPS        float64       `json:"qps"`
	Clock      string        `json:"clock"`
	SimSpeed   float64       `json:"sim_speed"`
	Peers      []string      `json:"peers"`
	Redis      string        `json:"redis"`
	Pipeline   int           `json:"pipeline"`
	Snapshot   bool          `json:"snapshot"`
	Rooms      bool          `json:"rooms"`
	Events     bool          `json:"events"`
	Nodes      int           `json:"nodes"`
	FleetRooms int           `json:"fleet_rooms"`
	FleetRate  float64       `json:"fleet_rate"`

	jsonOut, cpuProfile, memProfile string
}

var allPeers = []string{"engine", "naive", "redis", "redis-backend"}

// parseFlags parses and checks args. Errors are usage errors.
func parseFlags(args []string, stderr io.Writer) (params, error) {
	var p params
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&p.Users, "users", 1_000_000, "distinct users (loaded first, then touched)")
	fs.StringVar(&p.Dist, "dist", "zipf", "who is active: uniform or zipf")
	fs.Float64Var(&p.Skew, "skew", 1.1, "Zipf exponent s (> 1): larger means a few users make more of the requests")
	fs.IntVar(&p.Workers, "workers", runtime.GOMAXPROCS(0), "goroutines touching")
	fs.DurationVar(&p.Duration, "duration", 3*time.Second, "length of each peer's steady phase")
	fs.Int64Var(&p.Ops, "ops", 0, "touches in each peer's steady phase instead of -duration (0: use -duration)")
	fs.Uint64Var(&p.Seed, "seed", 1, "random seed: the same seed gives the same sequence of users")
	fs.IntVar(&p.QueryEvery, "query-every", 1000, "each worker runs Count(15m) and Recent(15m, 100) every this many touches (0: never)")
	fs.Float64Var(&p.QPS, "qps", 0, "also run Count and Recent at this rate from a separate goroutine, as a polling dashboard (0: off)")
	fs.StringVar(&p.Clock, "clock", "real", "real, or sim: simulated time running -sim-speed times faster, so index moves happen at a realistic rate")
	fs.Float64Var(&p.SimSpeed, "sim-speed", 60, "simulated seconds per real second, with -clock sim")
	peers := fs.String("peers", strings.Join(allPeers, ","), "comma-separated peers to run: "+strings.Join(allPeers, ", "))
	fs.StringVar(&p.Redis, "redis", "auto", "auto (start redis-server from PATH), an address host:port, or off")
	fs.IntVar(&p.Pipeline, "pipeline", 100, "commands per Redis pipeline flush, per worker")
	fs.BoolVar(&p.Snapshot, "snapshot", true, "time a snapshot write and load of the engine's final state")
	fs.BoolVar(&p.Rooms, "rooms", true, "also compare rooms with centrifuge's MemoryPresenceManager: a chat of users/10 rooms, a stream of users/10 members")
	fs.BoolVar(&p.Events, "events", true, "also measure events: Touch with and without 4 subscribers, and the delivery of every user going offline at once")
	fs.IntVar(&p.Nodes, "nodes", 0, "instead of the peers, run this many redispresence Stores in one process against one Redis (the fleet), with events and rooms")
	fs.IntVar(&p.FleetRooms, "fleet-rooms", 10_000, "rooms of the fleet run: each user is in one, picked by a Zipf law")
	fs.Float64Var(&p.FleetRate, "fleet-rate", 200_000, "touches/s of the fleet run in all (0: as fast as the nodes go, which one redis-server on one core cannot keep up with)")
	fs.StringVar(&p.jsonOut, "json", "", "also write every figure, the parameters and machine facts to this file")
	fs.StringVar(&p.cpuProfile, "cpuprofile", "", "write a CPU profile to this file")
	fs.StringVar(&p.memProfile, "memprofile", "", "write a heap profile to this file at the end")
	if err := fs.Parse(args); err != nil {
		return p, err
	}
	if fs.NArg() > 0 {
		return p, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	p.Peers = strings.Split(*peers, ",")
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	check(p.Users > 0 && p.Users <= 1_000_000_000, "-users must be 1 to 1e9, not %d", p.Users)
	check(p.Dist == "uniform" || p.Dist == "zipf", "-dist must be uniform or zipf, not %q", p.Dist)
	check(p.Skew > 1, "-skew must be > 1, not %g", p.Skew)
	check(p.Workers > 0 && p.Workers <= 4096, "-workers must be 1 to 4096, not %d", p.Workers)
	check(p.Duration > 0 || p.Ops > 0, "-duration or -ops must be positive")
	check(p.Ops >= 0, "-ops must not be negative")
	check(p.QueryEvery >= 0, "-query-every must not be negative")
	check(p.QPS >= 0, "-qps must not be negative")
	check(p.Clock == "real" || p.Clock == "sim", "-clock must be real or sim, not %q", p.Clock)
	check(p.SimSpeed > 0, "-sim-speed must be positive")
	check(p.Pipeline > 0, "-pipeline must be positive")
	check(p.Nodes >= 0 && p.Nodes <= 64, "-nodes must be 0 to 64, not %d", p.Nodes)
	check(p.FleetRooms >= 2 && p.FleetRooms <= 65536, "-fleet-rooms must be 2 to 65536, not %d", p.FleetRooms)
	check(p.FleetRate >= 0, "-fleet-rate must not be negative")
	check(p.Nodes == 0 || p.Duration > 0, "-nodes runs for -duration, which must be positive")
	for _, name := range p.Peers {
		check(slices.Contains(allPeers, name), "unknown peer %q in -peers", name)
	}
	if len(errs) > 0 {
		return p, errors.Join(errs...)
	}
	return p, nil
}

func main() {
	p, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\nRun 'go run ./bench -h' for the flags.\n", err)
		os.Exit(2)
	}
	if err := run(p, os.Stdout, progressWriter()); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// progressWriter returns stderr when it is a terminal, else nil: the
// progress line is for people watching, not for logs.
func progressWriter() io.Writer {
	fi, err := os.Stderr.Stat()
	if err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return nil
	}
	return os.Stderr
}

func run(p params, out, progress io.Writer) error {
	if p.cpuProfile != "" {
		f, err := os.Create(p.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	fmt.Fprintf(out, "presence bench: %d users, %s", p.Users, p.Dist)
	if p.Dist == "zipf" {
		fmt.Fprintf(out, " (s=%g)", p.Skew)
	}
	fmt.Fprintf(out, ", %d workers, %s clock, steady %s, GOMAXPROCS %d, %s, %s\n\n",
		p.Workers, p.Clock, steadyLength(p), runtime.GOMAXPROCS(0), runtime.Version(), cpuModel())

	if p.Nodes > 0 {
		r, err := runFleet(p, out)
		if err != nil {
			return fmt.Errorf("fleet: %w", err)
		}
		printFleet(out, r)
		if p.jsonOut != "" {
			return writeJSON(p.jsonOut, p, nil, nil, nil, &r)
		}
		return nil
	}
	var results []result
	for _, name := range p.Peers {
		results = append(results, runPeer(p, name, progress))
	}
	printReport(out, results)
	var rooms []roomsResult
	if p.Rooms {
		var err error
		if rooms, err = runRooms(p); err != nil {
			return err
		}
		printRooms(out, rooms)
	}
	var events *eventsResult
	if p.Events {
		r, err := runEvents(p)
		if err != nil {
			return fmt.Errorf("events: %w", err)
		}
		printEvents(out, r)
		events = &r
	}
	if p.jsonOut != "" {
		if err := writeJSON(p.jsonOut, p, results, rooms, events, nil); err != nil {
			return err
		}
	}
	if p.memProfile != "" {
		f, err := os.Create(p.memProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		runtime.GC()
		return pprof.WriteHeapProfile(f)
	}
	return nil
}

func steadyLength(p params) string {
	if p.Ops > 0 {
		return fmt.Sprintf("%d touches", p.Ops)
	}
	return p.Duration.String()
}

// cpuModel reads the CPU's name from /proc/cpuinfo, where there is one.
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}
