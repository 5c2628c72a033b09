package presencehttp_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/onlinenow/presence"
	"github.com/onlinenow/presence/presencehttp"
)

// memViewer is a room stream's client without a socket: a ResponseWriter
// that notes when what it waits for arrives, and counts messages.
type memViewer struct {
	h       http.Header
	mu      sync.Mutex
	want    []byte    // a member's ID, quoted, to wait for
	got     time.Time // when it came
	msgs    int       // events written
	started chan struct{}
	once    sync.Once
	arrived func()
}

func (m *memViewer) Header() http.Header { return m.h }
func (m *memViewer) WriteHeader(int)     {}
func (m *memViewer) Flush()              {}
func (m *memViewer) Write(p []byte) (int, error) {
	m.mu.Lock()
	m.msgs += bytes.Count(p, []byte("\nevent: ")) + bytes.Count(p[:min(len(p), 7)], []byte("event: "))
	if m.want != nil && bytes.Contains(p, m.want) {
		m.want, m.got = nil, time.Now()
		m.mu.Unlock()
		m.arrived()
		return len(p), nil
	}
	m.mu.Unlock()
	m.once.Do(func() { close(m.started) })
	return len(p), nil
}

// viewers opens n room streams of room on a Live handler over e, and
// returns them and a function that closes them all.
func viewers(b *testing.B, e *presence.Engine, room string, n int, arrived func(), opts ...presencehttp.Option) ([]*memViewer, func()) {
	h := presencehttp.Live(e.Backend(), func(r *http.Request, _ string) (string, bool) {
		return r.URL.Query().Get("u"), true
	}, opts...)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	vs := make([]*memViewer, n)
	for i := range vs {
		v := &memViewer{h: http.Header{}, started: make(chan struct{}), arrived: arrived}
		vs[i] = v
		req := httptest.NewRequest("GET", fmt.Sprintf("/%s/events?u=viewer-%d", room, i), nil).WithContext(ctx)
		wg.Go(func() { h.ServeHTTP(v, req) })
		<-v.started
	}
	return vs, func() { cancel(); wg.Wait() }
}

// BenchmarkLiveJoin10k: 10,000 viewers of one room on one engine, each
// with its room stream (no sockets: what the library does, from the
// backend's event to each stream's write). A room that big sends counts
// (WithMaxMembers, default 100). Each op is one member joining;
// latency-p50/p99 are how long until each viewer's stream wrote the new
// count, over all ops and viewers; B/stream is the heap and stacks an
// open stream takes (its goroutine, its scoped subscription, its
// connection).
func BenchmarkLiveJoin10k(b *testing.B) {
	n := 10_000
	if testing.Short() {
		n = 1000
	}
	e := presence.New()
	defer e.Close()
	var left sync.WaitGroup
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	vs, closeAll := viewers(b, e, "show", n, left.Done)
	defer closeAll()
	runtime.GC()
	runtime.ReadMemStats(&after)
	perStream := float64(after.HeapInuse+after.StackInuse-before.HeapInuse-before.StackInuse) / float64(n)
	var lat []time.Duration
	b.ResetTimer()
	for i := range b.N {
		id := fmt.Sprintf("member-%d", i)
		left.Add(n)
		for _, v := range vs {
			v.mu.Lock()
			v.want = fmt.Appendf(nil, `"count":%d}`, n+1+i)
			v.mu.Unlock()
		}
		time.Sleep(150 * time.Millisecond) // past every stream's coalescing window: a lone join
		start := time.Now()
		c, err := e.Enter("show", id, []byte(`{"n":1}`))
		if err != nil {
			b.Fatal(err)
		}
		left.Wait()
		for _, v := range vs {
			lat = append(lat, v.got.Sub(start))
		}
		defer c.Close()
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "latency-p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "latency-p99-ms")
	b.ReportMetric(perStream, "B/stream")
}

// BenchmarkLiveBurst: 1,000 joins within one second into a room of 1,000
// viewers, listed (WithMaxMembers above the room's size). msgs/viewer-max
// is the most messages a viewer's stream got for them (the target: 20 at
// most).
func BenchmarkLiveBurst(b *testing.B) {
	const n = 1000
	for range b.N {
		e := presence.New()
		var left sync.WaitGroup
		vs, closeAll := viewers(b, e, "burst", n, left.Done, presencehttp.WithMaxMembers(n+n))
		for _, v := range vs {
			v.mu.Lock()
			v.msgs = 0
			v.want = []byte(`"joiner-999"`)
			v.mu.Unlock()
		}
		left.Add(n)
		tick := time.NewTicker(time.Millisecond)
		var conns []presence.Conn
		for i := range n {
			<-tick.C
			c, err := e.Enter("burst", fmt.Sprint("joiner-", i), nil)
			if err != nil {
				b.Fatal(err)
			}
			conns = append(conns, c)
		}
		tick.Stop()
		left.Wait()
		most := 0
		for _, v := range vs {
			v.mu.Lock()
			most = max(most, v.msgs)
			v.mu.Unlock()
		}
		b.ReportMetric(float64(most), "msgs/viewer-max")
		for _, c := range conns {
			c.Close()
		}
		closeAll()
		e.Close()
	}
}

var _ = atomic.Int64{}
