package presenceprom_test

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/onlinenow/presence"
	"github.com/onlinenow/presence/presenceprom"
)

func ExampleNewCollector() {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	e := presence.New(presence.WithClock(func() time.Time { return now }))
	defer e.Close()
	e.Touch("alice")
	e.TouchAt("bob", now.Add(-10*time.Minute))

	reg := prometheus.NewRegistry() // served with promhttp.HandlerFor(reg, ...)
	reg.MustRegister(presenceprom.NewCollector(e, presenceprom.WithWindow("15m", 15*time.Minute)))

	fams, _ := reg.Gather()
	for _, f := range fams {
		switch f.GetName() {
		case "presence_users", "presence_online_users", "presence_active_users":
			for _, m := range f.GetMetric() {
				v := m.GetGauge().GetValue() + m.GetCounter().GetValue()
				fmt.Println(f.GetName(), v)
			}
		}
	}
	// Output:
	// presence_active_users 2
	// presence_online_users 1
	// presence_users 2
}
