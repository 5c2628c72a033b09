package redispresence

import (
	"errors"
	"math"
	"runtime"
	"strings"
	"testing"

	"github.com/onlinenow/presence"
)

// FuzzParseCursor feeds Page's cursor decoder hostile text and cursors of
// every shape. It must never panic, must refuse with ErrInvalidCursor or accept,
// and must give back every cursor a page can hand out.
func FuzzParseCursor(f *testing.F) {
	f.Add("", int64(0), "u")
	f.Add(cursor{1700000000000000, "user-1", ""}.String(), int64(-1), "a:b")
	f.Add(cursor{math.MinInt64, strings.Repeat("é", 256), walkOf("room")}.String(), int64(math.MaxInt64), strings.Repeat("x", 512))
	f.Add("forged!", int64(5), "")
	f.Add("LTE6", int64(1), ":")
	f.Fuzz(func(t *testing.T, text string, score int64, member string) {
		if c, ok, err := parseCursor(text, ""); err != nil {
			if !errors.Is(err, presence.ErrInvalidCursor) {
				t.Fatalf("%q: untyped error %v", text, err)
			}
		} else if ok {
			if c.member == "" || len(c.member) > presence.MaxIDLen {
				t.Fatalf("%q: member of %d bytes", text, len(c.member))
			}
			if again, _, err := parseCursor(c.String(), ""); err != nil || again != c {
				t.Fatalf("%q: round trip gave %v, %v", text, again, err)
			}
		} else if text != "" {
			t.Fatalf("%q: neither a cursor nor an error", text)
		}
		if member == "" || len(member) > presence.MaxIDLen {
			return
		}
		want := cursor{score, member, ""}
		if got, ok, err := parseCursor(want.String(), ""); err != nil || !ok || got != want {
			t.Fatalf("%v: parsed as %v, %v, %v", want, got, ok, err)
		}
	})
}

// TestParseCursorLong refuses a megabyte-long cursor without decoding it.
// The bytes allocated are averaged over many calls, so that what other
// goroutines allocate meanwhile (a client's pool, a store closing) does not
// count.
func TestParseCursorLong(t *testing.T) {
	long := strings.Repeat("A", 1<<20)
	const calls = 100
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range calls {
		if _, _, err := parseCursor(long, ""); !errors.Is(err, presence.ErrInvalidCursor) {
			t.Fatal(err)
		}
	}
	runtime.ReadMemStats(&after)
	if n := (after.TotalAlloc - before.TotalAlloc) / calls; n > 1<<10 {
		t.Fatalf("%d bytes allocated per call", n)
	}
}
