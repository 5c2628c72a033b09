// Package redistest runs a real redis-server for tests: the Debian
// package's binary from PATH, on a free loopback port, without
// persistence, stopped when the test ends.
//
// When redis-server is not installed the test is skipped, or fails if the
// environment variable PRESENCE_STRICT is set (as in CI), so that a green
// run cannot hide tests that never ran.
package redistest

import (
	"context"
	"net"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// Server is a redis-server a test started. It is not safe for concurrent
// use: one goroutine of the test stops and restarts it.
type Server struct {
	t    testing.TB
	bin  string
	port int
	cmd  *exec.Cmd
}

// Start starts a redis-server and stops it at the end of the test.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("PRESENCE_STRICT") != "" {
			t.Fatal("PRESENCE_STRICT is set and redis-server is not installed")
		}
		t.Skip("redis-server not in PATH; install the Debian package redis-server")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &Server{t: t, bin: bin, port: l.Addr().(*net.TCPAddr).Port}
	l.Close()
	s.Restart()
	t.Cleanup(s.Stop)
	return s
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// Restart starts the server again on its port, empty, and waits until it
// answers (at most five seconds). It is how a test ends an outage.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.cmd = exec.Command(s.bin, "--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no")
	require.NoError(s.t, s.cmd.Start())
	c := redis.NewClient(&redis.Options{Addr: s.Addr()})
	defer c.Close()
	for i := 0; ; i++ {
		if c.Ping(context.Background()).Err() == nil {
			return
		}
		require.Less(s.t, i, 250, "redis-server did not start")
		time.Sleep(20 * time.Millisecond) // polling a process start, not waiting for expiry
	}
}

// Stop kills the server, as an outage would; Restart brings it back.
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
