// Command quickstart records a burst of simulated requests in an engine and
// prints who is online, the way a web server would use the library.
package main

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/onlinenow/presence"
)

func main() {
	e := presence.New(presence.WithRetention(24 * time.Hour))
	defer e.Close()

	// Simulate an hour of traffic from 10,000 users, newest last.
	start := time.Now().Add(-time.Hour)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 200_000 {
		id := fmt.Sprint("user-", rng.IntN(10_000))
		e.TouchAt(id, start.Add(time.Duration(i)*time.Hour/200_000))
	}
	e.Touch("you")

	fmt.Println("known users:   ", e.Len())
	fmt.Println("online (5m):   ", e.Count(5*time.Minute))
	fmt.Println("active (15m):  ", e.Count(15*time.Minute))
	fmt.Println("newest five:")
	for _, a := range e.Recent(15*time.Minute, 5) {
		fmt.Printf("  %-12s last seen %v ago\n", a.ID, time.Since(a.LastSeen).Round(time.Second))
	}
}
