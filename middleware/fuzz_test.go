package middleware_test

import (
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/onlinenow/presence/middleware"
)

// FuzzClientIP checks ClientIP against a reference written the obvious
// way (split the header, then walk the hops from the right) on hostile
// header values, for each header a proxy may set.
func FuzzClientIP(f *testing.F) {
	for _, seed := range []string{
		"198.51.100.7", "1.1.1.1, 198.51.100.7, 10.2.2.2", "198.51.100.7:8080, [fd00::2]:443",
		"::ffff:10.9.9.9", "fe80::1%eth0", "[2001:db8::7]", "[1.2.3.4]:80", ",,", "",
		`for=1.1.1.1, for="[2001:db8::7]:443";proto=https, for=10.4.4.4`, "for=_hidden", "FOR=10.1.1.1;by=x",
		"10.0.0.7:0080, 10.0.0.8:65536", "[::1", "::1]", "[::1]]",
	} {
		for kind := range byte(3) {
			f.Add(kind, seed)
		}
	}
	proxies := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
	headers := []string{"X-Forwarded-For", "Forwarded", "X-Real-IP"}
	f.Fuzz(func(t *testing.T, kind byte, value string) {
		header := headers[int(kind)%len(headers)]
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = "10.0.0.1:80"
		for _, line := range strings.Split(value, "\n") { // several header lines
			r.Header.Add(header, line)
		}
		got, ok := middleware.ClientIP(r, header, proxies)
		want := refClientIP(r.Header.Values(header), header, proxies)
		if !ok || got != want {
			t.Fatalf("%s: %q: got %v, want %v", header, value, got, want)
		}
	})
}

// refClientIP is ClientIP for a trusted remote 10.0.0.1, the slow way.
func refClientIP(lines []string, header string, proxies []netip.Prefix) netip.Addr {
	var hops []string
	switch header {
	case "X-Forwarded-For":
		for _, v := range lines {
			hops = append(hops, strings.Split(v, ",")...)
		}
	case "X-Real-IP":
		if len(lines) == 1 {
			hops = lines
		}
	case "Forwarded":
		for _, v := range lines {
			for _, elem := range strings.Split(v, ",") {
				hop := ""
				for _, pair := range strings.Split(elem, ";") {
					if k, v, ok := strings.Cut(strings.TrimSpace(pair), "="); ok && strings.EqualFold(k, "for") {
						hop = strings.Trim(v, `"`)
						break
					}
				}
				hops = append(hops, hop)
			}
		}
	}
	client := netip.MustParseAddr("10.0.0.1")
	for i := len(hops) - 1; i >= 0; i-- {
		ip, ok := refHop(hops[i])
		if !ok {
			break
		}
		client = ip
		if !slicesContainsPrefix(proxies, ip) {
			break
		}
	}
	return client
}

// refHop parses a hop with the standard library's parsers: "ip:port" and
// "[ipv6]:port" as netip.ParseAddrPort reads them, "[ipv6]", or a bare
// address; never a zone.
func refHop(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	var ip netip.Addr
	if ap, err := netip.ParseAddrPort(s); err == nil {
		ip = ap.Addr()
	} else if inner, ok := strings.CutPrefix(s, "["); ok && strings.HasSuffix(inner, "]") {
		a, err := netip.ParseAddr(inner[:len(inner)-1])
		if err != nil || !a.Is6() {
			return netip.Addr{}, false
		}
		ip = a
	} else if a, err := netip.ParseAddr(s); err == nil {
		ip = a
	} else {
		return netip.Addr{}, false
	}
	if ip.Zone() != "" {
		return netip.Addr{}, false
	}
	return ip.Unmap(), true
}

func slicesContainsPrefix(ps []netip.Prefix, ip netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}
