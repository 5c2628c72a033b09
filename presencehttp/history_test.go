package presencehttp_test

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/onlinenow/presence"
	"github.com/onlinenow/presence/presencehttp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Run samples on a fake clock inside a synctest bubble: nothing sleeps.
func TestHistoryRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := presence.New() // time.Now is the bubble's fake clock
		e.Touch("a")
		hist := presencehttp.NewHistory(e.Backend())
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { hist.Run(ctx); close(done) }()

		time.Sleep(35 * time.Second)
		synctest.Wait()
		e.Touch("b")
		time.Sleep(10 * time.Second)
		synctest.Wait()
		cancel()
		<-done

		points := hist.Points()
		require.Len(t, points, 5, "at once, then every 10s for 45s")
		for i := 1; i < len(points); i++ {
			assert.Equal(t, 10*time.Second, points[i].T.Sub(points[i-1].T))
		}
		assert.Equal(t, 1, points[0].Count)
		assert.Equal(t, 2, points[4].Count)
	})
}
