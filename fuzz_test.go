package presence_test

import (
	"bytes"
	"errors"
	"testing"

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
