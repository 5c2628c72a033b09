package middleware_test

import (
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/onlinenow/presence/middleware"
	"github.com/stretchr/testify/assert"
)

func TestClientIPSpoofing(t *testing.T) {
	proxies := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
	tests := []struct {
		name    string
		header  string // which header the proxies set
		remote  string
		headers map[string][]string
		proxies []netip.Prefix
		want    string
	}{
		{"no proxies: headers ignored", "X-Forwarded-For", "203.0.113.5:1234",
			map[string][]string{"X-Forwarded-For": {"1.2.3.4"}}, nil, "203.0.113.5"},
		{"untrusted remote: headers ignored", "X-Forwarded-For", "203.0.113.5:1234",
			map[string][]string{"X-Forwarded-For": {"1.2.3.4"}}, proxies, "203.0.113.5"},
		{"one trusted proxy", "X-Forwarded-For", "10.0.0.1:80",
			map[string][]string{"X-Forwarded-For": {"198.51.100.7"}}, proxies, "198.51.100.7"},
		{"forged leftmost", "X-Forwarded-For", "10.0.0.1:80",
			map[string][]string{"X-Forwarded-For": {"1.1.1.1, 198.51.100.7"}}, proxies, "198.51.100.7"},
		{"many hops", "X-Forwarded-For", "10.0.0.1:80",
			map[string][]string{"X-Forwarded-For": {"6.6.6.6, 198.51.100.7, 10.2.2.2, 10.1.1.1"}}, proxies, "198.51.100.7"},
		{"several header lines", "X-Forwarded-For", "10.0.0.1:80",
			map[string][]string{"X-Forwarded-For": {"6.6.6.6", "198.51.100.7, 10.1.1.1"}}, proxies, "198.51.100.7"},
		{"all hops trusted: leftmost", "X-Forwarded-For", "10.0.0.1:80",
			map[string][]string{"X-Forwarded-For": {"10.3.3.3, 10.1.1.1"}}, proxies, "10.3.3.3"},
		{"garbage stops at last trusted", "X-Forwarded-For", "10.0.0.1:80",
			map[string][]string{"X-Forwarded-For": {"1.1.1.1, not-an-ip, 10.1.1.1"}}, proxies, "10.1.1.1"},
		{"empty hop stops", "X-Forwarded-For", "10.0.0.1:80",
			map[string][]string{"X-Forwarded-For": {"1.1.1.1,,"}}, proxies, "10.0.0.1"},
		{"zone id never trusted", "X-Forwarded-For", "10.0.0.1:80",
			map[string][]string{"X-Forwarded-For": {"1.1.1.1, fd00::1%eth0"}}, proxies, "10.0.0.1"},
		{"mapped IPv6 of a trusted proxy", "X-Forwarded-For", "10.0.0.1:80",
			map[string][]string{"X-Forwarded-For": {"198.51.100.7, ::ffff:10.9.9.9"}}, proxies, "198.51.100.7"},
		{"mapped IPv6 client is unmapped", "X-Forwarded-For", "10.0.0.1:80",
			map[string][]string{"X-Forwarded-For": {"::ffff:198.51.100.7"}}, proxies, "198.51.100.7"},
		{"mapped forged after untrusted", "X-Forwarded-For", "10.0.0.1:80",
			map[string][]string{"X-Forwarded-For": {"::ffff:10.9.9.9, 198.51.100.7"}}, proxies, "198.51.100.7"},
		{"mapped remote", "X-Forwarded-For", "[::ffff:10.0.0.1]:80",
			map[string][]string{"X-Forwarded-For": {"198.51.100.7"}}, proxies, "198.51.100.7"},
		{"hop with port", "X-Forwarded-For", "10.0.0.1:80",
			map[string][]string{"X-Forwarded-For": {"198.51.100.7:4444"}}, proxies, "198.51.100.7"},
		{"ipv6 hops", "X-Forwarded-For", "[fd00::1]:80",
			map[string][]string{"X-Forwarded-For": {"2001:db8::9, fd00::2"}}, proxies, "2001:db8::9"},
		{"mixed: other headers ignored", "X-Forwarded-For", "10.0.0.1:80",
			map[string][]string{"X-Forwarded-For": {"198.51.100.7"}, "X-Real-Ip": {"1.1.1.1"}, "Forwarded": {"for=2.2.2.2"}}, proxies, "198.51.100.7"},
		{"x-real-ip", "X-Real-IP", "10.0.0.1:80",
			map[string][]string{"X-Real-Ip": {"198.51.100.7"}, "X-Forwarded-For": {"1.1.1.1"}}, proxies, "198.51.100.7"},
		{"x-real-ip twice: none trusted", "X-Real-IP", "10.0.0.1:80",
			map[string][]string{"X-Real-Ip": {"1.1.1.1", "198.51.100.7"}}, proxies, "10.0.0.1"},
		{"x-real-ip from untrusted remote", "X-Real-IP", "203.0.113.5:80",
			map[string][]string{"X-Real-Ip": {"1.1.1.1"}}, proxies, "203.0.113.5"},
		{"forwarded", "Forwarded", "10.0.0.1:80",
			map[string][]string{"Forwarded": {`for=1.1.1.1, for="[2001:db8::7]:443";proto=https, for=10.4.4.4`}}, proxies, "2001:db8::7"},
		{"forwarded obfuscated stops", "Forwarded", "10.0.0.1:80",
			map[string][]string{"Forwarded": {`for=1.1.1.1, for=_hidden`}}, proxies, "10.0.0.1"},
		{"forwarded unknown stops", "Forwarded", "10.0.0.1:80",
			map[string][]string{"Forwarded": {`for=1.1.1.1, for=unknown`}}, proxies, "10.0.0.1"},
		{"forwarded without for", "Forwarded", "10.0.0.1:80",
			map[string][]string{"Forwarded": {`proto=https`}}, proxies, "10.0.0.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = tt.remote
			for k, vs := range tt.headers {
				for _, v := range vs {
					r.Header.Add(k, v)
				}
			}
			ip, ok := middleware.ClientIP(r, tt.header, tt.proxies)
			assert.True(t, ok)
			assert.Equal(t, tt.want, ip.String())
		})
	}
}

func TestClientIPRemoteAddr(t *testing.T) {
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "[fe80::1%eth0]:80"
	ip, ok := middleware.ClientIP(r, "", nil)
	assert.True(t, ok)
	assert.Equal(t, "fe80::1%eth0", ip.String(), "the server's own view of a link-local peer")

	r.RemoteAddr = "not an address"
	_, ok = middleware.ClientIP(r, "", nil)
	assert.False(t, ok)
}

// TestClientIPHostileHeader: a client behind a trusted proxy writes the left
// of the header, as long as the server lets it. The walk allocates nothing
// however many hops it holds.
func TestClientIPHostileHeader(t *testing.T) {
	proxies := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	for _, tc := range []struct {
		name, header, value, want string
	}{
		{"100k trusted hops", "X-Forwarded-For", "198.51.100.7" + strings.Repeat(", 10.0.0.7", 100_000), "198.51.100.7"},
		{"100k trusted hops with ports", "X-Forwarded-For", "198.51.100.7" + strings.Repeat(", 10.0.0.7:8080", 100_000), "198.51.100.7"},
		{"a million commas", "X-Forwarded-For", strings.Repeat(",", 1<<20), "10.0.0.1"},
		{"100k forwarded elements", "Forwarded", "for=198.51.100.7" + strings.Repeat(`, for="10.0.0.7";proto=https`, 100_000), "198.51.100.7"},
		{"a million semicolons", "Forwarded", strings.Repeat(";", 1<<20), "10.0.0.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = "10.0.0.1:80"
			r.Header.Set(tc.header, tc.value)
			var ip netip.Addr
			allocs := testing.AllocsPerRun(3, func() { ip, _ = middleware.ClientIP(r, tc.header, proxies) })
			assert.Equal(t, tc.want, ip.String())
			assert.Zero(t, allocs)
		})
	}
}

// TestClientIPHopForms pins which hops parse, each as the only hop after a
// trusted proxy: a hop that does not parse leaves the proxy as the client.
func TestClientIPHopForms(t *testing.T) {
	proxies := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	for hop, want := range map[string]string{
		"198.51.100.7":          "198.51.100.7",
		" 198.51.100.7 ":        "198.51.100.7",
		"198.51.100.7:0":        "198.51.100.7",
		"198.51.100.7:65535":    "198.51.100.7",
		"198.51.100.7:65536":    "10.0.0.1",
		"198.51.100.7:":         "10.0.0.1",
		"198.51.100.7:80a":      "10.0.0.1",
		"198.51.100.7:123456":   "10.0.0.1",
		"2001:db8::7":           "2001:db8::7",
		"[2001:db8::7]":         "2001:db8::7",
		"[2001:db8::7]:443":     "2001:db8::7",
		"[2001:db8::7]443":      "10.0.0.1",
		"[2001:db8::7]:":        "10.0.0.1",
		"[2001:db8::7":          "10.0.0.1",
		"[198.51.100.7]":        "10.0.0.1", // brackets are for IPv6
		"[198.51.100.7]:80":     "10.0.0.1",
		"[::ffff:198.51.100.7]": "198.51.100.7",
		"198.51.100.7:00080":    "198.51.100.7",
		"::ffff:198.51.100.7":   "198.51.100.7",
		"fe80::1%eth0":          "10.0.0.1",
		"[fe80::1%eth0]:80":     "10.0.0.1",
		"":                      "10.0.0.1",
		"[]":                    "10.0.0.1",
		"unknown":               "10.0.0.1",
		"198.51.100.7:80:90":    "10.0.0.1",
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = "10.0.0.1:80"
		r.Header.Set("X-Forwarded-For", hop)
		ip, ok := middleware.ClientIP(r, "X-Forwarded-For", proxies)
		assert.True(t, ok)
		assert.Equal(t, want, ip.String(), "hop %q", hop)
	}
}

// TestClientIPGarbageAllocs: a garbage hop that ends the walk costs at most
// the parser's error.
func TestClientIPGarbageAllocs(t *testing.T) {
	proxies := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "10.0.0.1:80"
	r.Header.Set("X-Forwarded-For", "1.1.1.1, unknown"+strings.Repeat(", 10.0.0.7", 1000))
	var ip netip.Addr
	allocs := testing.AllocsPerRun(10, func() { ip, _ = middleware.ClientIP(r, "X-Forwarded-For", proxies) })
	assert.Equal(t, "10.0.0.7", ip.String())
	assert.LessOrEqual(t, allocs, 1.0)
}
