// Package redistest runs real redis-server processes for tests: the Debian
// package's binaries from PATH, each on a free loopback port with a
// temporary directory, without persistence, killed when the test ends.
// It starts three topologies:
//
//   - [Start]: one standalone server.
//   - [StartSentinel]: a master, a replica and three sentinels, for a
//     redis.FailoverClient; [Sentinel.KillMaster] makes them fail over.
//   - [StartCluster]: three masters made into a cluster with
//     "redis-cli --cluster create", for a redis.ClusterClient;
//     [Cluster.Reshard] moves slots between them.
//
// [Run] starts a standalone server outside a test, for a program (the
// bench) that measures against a real Redis; the tests' servers are
// started the same way.
//
// When redis-server (or redis-cli, for a cluster) is not installed the
// test is skipped, or fails if the environment variable PRESENCE_STRICT is
// set (as in CI), so that a green run cannot hide tests that never ran.
package redistest

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// Server is a redis-server a test (or Run) started. It is not safe for
// concurrent use: one goroutine of the test stops and restarts it.
type Server struct {
	t    testing.TB // nil for Run's
	bin  string
	port int
	dir  string
	args []string // beyond port, bind, dir and persistence
	cmd  *exec.Cmd
}

// lookPath finds a binary of the Debian package redis-server, or skips (or
// fails, under PRESENCE_STRICT) the test.
func lookPath(t testing.TB, name string) string {
	t.Helper()
	bin, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("PRESENCE_STRICT") != "" {
			t.Fatalf("PRESENCE_STRICT is set and %s is not installed", name)
		}
		t.Skipf("%s not in PATH; install the Debian package redis-server", name)
	}
	return bin
}

// Start starts a standalone redis-server and stops it at the end of the test.
func Start(t testing.TB) *Server {
	t.Helper()
	return start(t, lookPath(t, "redis-server"), freePort(t, 0))
}

// start starts a server with the extra arguments and kills it at the end
// of the test.
func start(t testing.TB, bin string, port int, args ...string) *Server {
	t.Helper()
	s := &Server{t: t, bin: bin, port: port, dir: t.TempDir(), args: args}
	s.Restart()
	t.Cleanup(s.Stop)
	return s
}

// Run starts a standalone redis-server from PATH, outside a test, on a
// free loopback port with a temporary directory and no persistence, and
// waits (at most five seconds) until it answers. Close stops it; Restart
// is for a test's servers (Start's).
func Run() (*Server, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redistest: redis-server not in PATH; install the Debian package redis-server")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	dir, err := os.MkdirTemp("", "redistest")
	if err != nil {
		return nil, err
	}
	s := &Server{bin: bin, port: port, dir: dir}
	if err := s.launch(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Close stops a server Run started and removes its directory.
func (s *Server) Close() {
	s.Stop()
	os.RemoveAll(s.dir)
}

// freePort returns a loopback port that was free a moment ago, and whose
// port+offset was free too (a cluster node's bus listens at +10000).
func freePort(t testing.TB, offset int) int {
	t.Helper()
	if offset == 0 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port
	}
	for range 100 {
		port := 20000 + rand.IntN(65535-offset-20000)
		a, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		b, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port+offset)))
		a.Close()
		if err != nil {
			continue
		}
		b.Close()
		return port
	}
	t.Fatal("no free loopback port")
	return 0
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// Restart starts the server again on its port and waits until it answers
// (at most five seconds). A standalone server comes back empty: it is how
// a test ends an outage.
func (s *Server) Restart() {
	s.t.Helper()
	require.NoError(s.t, s.launch())
}

// launch (re)starts the process and waits until it answers a PING.
func (s *Server) launch() error {
	s.Stop()
	args := append([]string{"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1", "--dir", s.dir,
		"--save", "", "--appendonly", "no"}, s.args...)
	s.cmd = exec.Command(s.bin, args...)
	if err := s.cmd.Start(); err != nil {
		return err
	}
	c := redis.NewClient(&redis.Options{Addr: s.Addr()})
	defer c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			s.Stop()
			return fmt.Errorf("redistest: redis-server did not answer on %s: %w", s.Addr(), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop kills the server (SIGKILL), as a crash or an outage would; Restart
// brings it back.
func (s *Server) Stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Kill()
		s.cmd.Wait()
		s.cmd = nil
	}
}

// Signal sends sig to the server process: SIGSTOP makes it hang without
// closing connections, SIGCONT wakes it.
func (s *Server) Signal(sig os.Signal) error { return s.cmd.Process.Signal(sig) }

// client returns a plain client of the server, closed at the end of the test.
func (s *Server) client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr()})
	s.t.Cleanup(func() { c.Close() })
	return c
}

// waitFor polls cond every 20ms until it holds, or fails the test after
// limit: the servers' own state changes (a start, a sync, a failover), not
// a sleep for expiry.
func waitFor(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("redistest: waited %v for %s", limit, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// info returns the value of field in the INFO section's text, or "".
func info(c *redis.Client, section, field string) string {
	text, err := c.Info(context.Background(), section).Result()
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(text, "\r\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return v
		}
	}
	return ""
}

// Sentinel is a master, one replica of it, and three sentinels watching
// them under the name [MasterName], with quorum two, a master declared
// down after 500ms. Not safe for concurrent use.
type Sentinel struct {
	t         testing.TB
	Master    *Server // the master at the start; after a failover, the old one
	Replica   *Server
	Sentinels []*Server
}

// MasterName is the name the sentinels know the master by.
const MasterName = "presence"

// StartSentinel starts the five processes and waits until the replica is
// in sync and each sentinel knows the two others and the replica.
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	bin := lookPath(t, "redis-server")
	master := start(t, bin, freePort(t, 0))
	replica := start(t, bin, freePort(t, 0), "--replicaof", "127.0.0.1", strconv.Itoa(master.port))
	rc := replica.client()
	waitFor(t, 10*time.Second, "the replica to sync", func() bool {
		return info(rc, "replication", "master_link_status") == "up"
	})
	sn := &Sentinel{t: t, Master: master, Replica: replica}
	for range 3 {
		dir := t.TempDir()
		port := freePort(t, 0)
		conf := filepath.Join(dir, "sentinel.conf")
		text := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nsentinel monitor %s 127.0.0.1 %d 2\n"+
			"sentinel down-after-milliseconds %[3]s 500\nsentinel failover-timeout %[3]s 5000\n"+
			"sentinel parallel-syncs %[3]s 1\n", port, dir, MasterName, master.port)
		require.NoError(t, os.WriteFile(conf, []byte(text), 0o600))
		s := &Server{t: t, bin: bin, port: port, dir: dir}
		s.cmd = exec.Command(bin, conf, "--sentinel")
		require.NoError(t, s.cmd.Start())
		t.Cleanup(s.Stop)
		sn.Sentinels = append(sn.Sentinels, s)
	}
	// Sentinels find each other through hello messages every 2s; on a
	// machine busy with other tests' processes that can take a while.
	for _, s := range sn.Sentinels {
		c := s.client()
		var last map[string]string
		what := func() string {
			return fmt.Sprintf("the sentinels to find each other (sentinel %s saw %s other sentinels and %s replicas)",
				s.Addr(), last["num-other-sentinels"], last["num-slaves"])
		}
		deadline := time.Now().Add(60 * time.Second)
		for {
			if m, err := c.Do(context.Background(), "SENTINEL", "MASTER", MasterName).Result(); err == nil {
				last = fields(m)
				if last["num-other-sentinels"] == "2" && last["num-slaves"] == "1" {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("redistest: waited 60s for %s", what())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return sn
}

// fields reads a SENTINEL MASTER reply (a flat list or a map) as a map.
func fields(reply any) map[string]string {
	out := map[string]string{}
	switch r := reply.(type) {
	case []any:
		for i := 0; i+1 < len(r); i += 2 {
			out[fmt.Sprint(r[i])] = fmt.Sprint(r[i+1])
		}
	case map[any]any:
		for k, v := range r {
			out[fmt.Sprint(k)] = fmt.Sprint(v)
		}
	}
	return out
}

// Addrs are the sentinels' host:port addresses.
func (sn *Sentinel) Addrs() []string {
	var out []string
	for _, s := range sn.Sentinels {
		out = append(out, s.Addr())
	}
	return out
}

// MasterAddr asks the first sentinel that answers for the master's address.
func (sn *Sentinel) MasterAddr() string {
	for _, s := range sn.Sentinels {
		c := redis.NewSentinelClient(&redis.Options{Addr: s.Addr()})
		addr, err := c.GetMasterAddrByName(context.Background(), MasterName).Result()
		c.Close()
		if err == nil && len(addr) == 2 {
			return net.JoinHostPort(addr[0], addr[1])
		}
	}
	return ""
}

// KillMaster SIGKILLs the master and waits until the sentinels have
// promoted the replica (see [Sentinel.WaitFailover]).
func (sn *Sentinel) KillMaster() {
	sn.t.Helper()
	sn.Master.Stop()
	sn.WaitFailover()
}

// WaitFailover waits (up to 20s) until the sentinels name the replica
// master and it says so itself.
func (sn *Sentinel) WaitFailover() {
	sn.t.Helper()
	old := sn.Master.Addr()
	rc := sn.Replica.client()
	waitFor(sn.t, 20*time.Second, "the sentinels to promote the replica", func() bool {
		return sn.MasterAddr() == sn.Replica.Addr() && info(rc, "replication", "role") == "master"
	})
	require.NotEqual(sn.t, old, sn.MasterAddr())
}

// Cluster is three masters, no replicas, owning the 16384 slots in equal
// thirds. Not safe for concurrent use.
type Cluster struct {
	t     testing.TB
	cli   string
	Nodes []*Server
}

// StartCluster starts three cluster-enabled servers, joins them with
// redis-cli --cluster create and waits until every node says the cluster
// is ok.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	bin := lookPath(t, "redis-server")
	cl := &Cluster{t: t, cli: lookPath(t, "redis-cli")}
	var addrs []string
	for range 3 {
		s := start(t, bin, freePort(t, 10000), "--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000")
		cl.Nodes = append(cl.Nodes, s)
		addrs = append(addrs, s.Addr())
	}
	cl.run(append(append([]string{"--cluster", "create"}, addrs...), "--cluster-replicas", "0", "--cluster-yes")...)
	cl.wait()
	return cl
}

// run runs redis-cli with args and fails the test if it fails.
func (cl *Cluster) run(args ...string) {
	cl.t.Helper()
	var out bytes.Buffer
	cmd := exec.Command(cl.cli, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(cl.t, cmd.Run(), "redis-cli %s:\n%s", strings.Join(args, " "), out.String())
}

// wait waits until every node says the cluster is ok with all slots served.
func (cl *Cluster) wait() {
	cl.t.Helper()
	for _, n := range cl.Nodes {
		c := n.client()
		waitFor(cl.t, 20*time.Second, "the cluster to be ok", func() bool {
			text, err := c.ClusterInfo(context.Background()).Result()
			return err == nil && strings.Contains(text, "cluster_state:ok") &&
				strings.Contains(text, "cluster_slots_ok:16384") && strings.Contains(text, "cluster_known_nodes:3")
		})
	}
}

// Addrs are the nodes' host:port addresses.
func (cl *Cluster) Addrs() []string {
	var out []string
	for _, s := range cl.Nodes {
		out = append(out, s.Addr())
	}
	return out
}

// Reshard moves n slots from node from to node to (indexes into Nodes),
// keys and all, with redis-cli --cluster reshard, while clients go on: they
// follow the ASK and MOVED redirections the move makes.
func (cl *Cluster) Reshard(from, to, n int) {
	cl.t.Helper()
	id := func(i int) string {
		c := redis.NewClient(&redis.Options{Addr: cl.Nodes[i].Addr()})
		defer c.Close()
		v, err := c.Do(context.Background(), "CLUSTER", "MYID").Text()
		require.NoError(cl.t, err)
		return v
	}
	cl.run("--cluster", "reshard", cl.Nodes[from].Addr(), "--cluster-from", id(from), "--cluster-to", id(to),
		"--cluster-slots", strconv.Itoa(n), "--cluster-yes", "--cluster-pipeline", "100")
	cl.wait()
}
