package presence_test

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/onlinenow/presence"
)

// FuzzReadFrom feeds the snapshot decoder arbitrary bytes, seeded with valid
// files. It must never panic, must refuse with a typed error or accept, and
// a file it accepts must leave the engine consistent and survive a write and
// read back unchanged.
func FuzzReadFrom(f *testing.F) {
	f.Add(smallSnapshot(f))
	f.Add(snapshotOf(f, presence.New()))
	one := presence.New()
	one.TouchAt("ünïcødé", t0)
	one.SetMeta("ünïcødé", "meta")
	f.Add(snapshotOf(f, one))
	f.Fuzz(func(t *testing.T, data []byte) {
		e := presence.New(presence.WithShards(2))
		_, err := e.ReadFrom(bytes.NewReader(data))
		if err != nil {
			if !errors.Is(err, presence.ErrCorruptSnapshot) && !errors.Is(err, presence.ErrSnapshotVersion) {
				t.Fatalf("untyped error: %v", err)
			}
			if e.Len() != 0 {
				t.Fatal("a refused file changed the engine")
			}
			return
		}
		if err := presence.CheckInvariants(e); err != nil {
			t.Fatal(err)
		}
		again := presence.New(presence.WithShards(2))
		if _, err := again.ReadFrom(bytes.NewReader(snapshotOf(t, e))); err != nil {
			t.Fatalf("re-reading our own snapshot: %v", err)
		}
		if e.Len() != again.Len() {
			t.Fatalf("round trip changed %d users to %d", e.Len(), again.Len())
		}
	})
}

// FuzzCursorText feeds Cursor.UnmarshalText arbitrary text, seeded with
// cursors of a real walk. It must never panic, must refuse with
// ErrInvalidCursor or accept, and an accepted cursor must survive a text
// round trip and page an engine without panicking.
func FuzzCursorText(f *testing.F) {
	e := presence.New(presence.WithShards(2))
	for i := range 20 {
		e.TouchAt(fmt.Sprint("user-", i), t0.Add(time.Duration(i%3)*time.Second))
	}
	var cur presence.Cursor
	for {
		_, next := e.Page(time.Time{}, cur, 3)
		if next.IsZero() {
			break
		}
		f.Add(next.String())
		cur = next
	}
	f.Add("")
	f.Fuzz(func(t *testing.T, text string) {
		var c presence.Cursor
		if err := c.UnmarshalText([]byte(text)); err != nil {
			if !errors.Is(err, presence.ErrInvalidCursor) {
				t.Fatalf("untyped error: %v", err)
			}
			return
		}
		var again presence.Cursor
		if err := again.UnmarshalText([]byte(c.String())); err != nil || again != c {
			t.Fatalf("round trip of %q: %v, %v != %v", text, err, again, c)
		}
		page, _ := e.Page(time.Time{}, c, 5)
		if len(page) > 5 {
			t.Fatalf("page of %d", len(page))
		}
	})
}
