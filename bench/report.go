package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"text/tabwriter"
	"time"
)

// printReport writes the table of figures, then each peer's ratios to the
// engine's.
func printReport(w io.Writer, results []result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "peer\tload/s\ttouches/s\tns/touch\tp50\tp99\tp99.9\tallocs/touch\tqueries/s\tquery p50\tquery p99\tbytes/user\t")
	var base *result
	for i := range results {
		r := &results[i]
		if r.Peer == "engine" && r.Skipped == "" {
			base = r
		}
		if r.Skipped != "" {
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.1f\t%s\t%s\t%s\t%.3f\t%s\t%s\t%s\t%.0f\t\n", r.Peer,
			si(r.LoadPerSec), si(r.TouchesPerSec), r.NsPerTouch,
			dur(r.TouchP50), dur(r.TouchP99), dur(r.TouchP999), r.AllocsPerTouch,
			si(r.QueriesPerSec), dur(r.QueryP50), dur(r.QueryP99), r.BytesPerUser)
	}
	tw.Flush()
	for _, r := range results {
		if r.Skipped != "" {
			fmt.Fprintf(w, "%s: skipped: %s\n", r.Peer, r.Skipped)
		}
	}

	if base != nil && len(results) > 1 {
		fmt.Fprintln(w, "\nengine's advantage (peer's figure / engine's; touches/s: engine's / peer's):")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "peer\ttouches/s\ttouch p99\tquery p50\tquery p99\tbytes/user\t")
		for _, r := range results {
			if r.Peer == "engine" || r.Skipped != "" {
				continue
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t\n", r.Peer,
				ratio(base.TouchesPerSec, r.TouchesPerSec), ratio(r.TouchP99, base.TouchP99),
				ratio(r.QueryP50, base.QueryP50), ratio(r.QueryP99, base.QueryP99),
				ratio(r.BytesPerUser, base.BytesPerUser))
		}
		tw.Flush()
	}
	for _, r := range results {
		if r.RedisMembersSent > 0 {
			fmt.Fprintf(w, "\n%s: %d touches sent %d ZADD members to Redis: %.1fx fewer writes than one per touch\n",
				r.Peer, r.Touches, r.RedisMembersSent, float64(r.Touches)/float64(r.RedisMembersSent))
		}
		if r.MovesPerTouch > 0 {
			fmt.Fprintf(w, "\n%s: %.1f%% of touches moved an index entry (first touch of a user in a new slot)\n", r.Peer, 100*r.MovesPerTouch)
		}
		if r.SnapshotBytes > 0 {
			fmt.Fprintf(w, "%s snapshot: %s, %.1f bytes/user; written at %s records/s, loaded (Open) at %s records/s\n",
				r.Peer, bytesize(r.SnapshotBytes), float64(r.SnapshotBytes)/float64(r.SnapshotUsers),
				si(r.SnapshotWritePerS), si(r.SnapshotLoadPerSec))
		}
	}
}

// si formats a rate with an SI suffix: 1.23M.
func si(v float64) string {
	switch {
	case v >= 1e9:
		return fmt.Sprintf("%.2fG", v/1e9)
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.1fk", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}

// dur formats nanoseconds as a short duration.
func dur(ns float64) string {
	d := time.Duration(ns)
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/1e6)
	case d >= time.Microsecond:
		return fmt.Sprintf("%.1fµs", float64(d)/1e3)
	}
	return fmt.Sprintf("%dns", d.Nanoseconds())
}

// ratio formats a/b as "12.3x", or "-" when either is missing.
func ratio(a, b float64) string {
	if a <= 0 || b <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1fx", a/b)
}

func bytesize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

type machine struct {
	GOMAXPROCS int    `json:"gomaxprocs"`
	NumCPU     int    `json:"num_cpu"`
	GoVersion  string `json:"go_version"`
	CPU        string `json:"cpu"`
	OS         string `json:"os"`
	Arch       string `json:"arch"`
}

// writeJSON writes every figure with the parameters and machine facts.
func writeJSON(path string, p params, results []result, rooms []roomsResult, events *eventsResult, fleet *fleetResult) error {
	doc := struct {
		Time    time.Time     `json:"time"`
		Params  params        `json:"params"`
		Machine machine       `json:"machine"`
		Results []result      `json:"results"`
		Rooms   []roomsResult `json:"rooms,omitempty"`
		Events  *eventsResult `json:"events,omitempty"`
		Fleet   *fleetResult  `json:"fleet,omitempty"`
	}{
		Time:   time.Now().UTC(),
		Params: p,
		Machine: machine{
			GOMAXPROCS: runtime.GOMAXPROCS(0), NumCPU: runtime.NumCPU(), GoVersion: runtime.Version(),
			CPU: cpuModel(), OS: runtime.GOOS, Arch: runtime.GOARCH,
		},
		Results: results,
		Rooms:   rooms,
		Events:  events,
		Fleet:   fleet,
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
