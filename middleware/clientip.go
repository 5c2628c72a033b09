package middleware

import (
	"net/http"
	"net/netip"
	"strings"
)

// ClientIP returns the IP of the client that sent r. With no proxies it is
// RemoteAddr's. When RemoteAddr is in one of proxies, header (one of
// "X-Forwarded-For", "X-Real-IP", "Forwarded"; as WithTrustedProxies) is
// walked from the right while each hop is in proxies; the first hop that is
// not is the client. A hop that does not parse, or carries a zone ID, ends
// the walk at the last trusted hop. IPv4-mapped IPv6 addresses are unmapped.
// It reports false only if RemoteAddr itself does not parse.
func ClientIP(r *http.Request, header string, proxies []netip.Prefix) (netip.Addr, bool) {
	remote, ok := parseHop(r.RemoteAddr)
	if !ok {
		// RemoteAddr comes from the server, but a handler in front may
		// have rewritten it; a zone (link-local peer) is legitimate here.
		ap, err := netip.ParseAddrPort(r.RemoteAddr)
		if err != nil {
			return netip.Addr{}, false
		}
		return ap.Addr().Unmap(), true
	}
	if len(proxies) == 0 || !trusted(remote, proxies) {
		return remote, true
	}
	var hops []string
	switch http.CanonicalHeaderKey(header) {
	case "X-Forwarded-For":
		for _, v := range r.Header.Values("X-Forwarded-For") {
			hops = append(hops, strings.Split(v, ",")...)
		}
	case "X-Real-Ip":
		if vs := r.Header.Values("X-Real-Ip"); len(vs) == 1 {
			hops = vs // several X-Real-IP lines: one was forged; trust none
		}
	case "Forwarded":
		for _, v := range r.Header.Values("Forwarded") {
			for _, elem := range strings.Split(v, ",") {
				hops = append(hops, forwardedFor(elem))
			}
		}
	}
	client := remote
	for i := len(hops) - 1; i >= 0; i-- {
		hop, ok := parseHop(hops[i])
		if !ok {
			return client, true // garbage: stop at the last trusted hop
		}
		client = hop
		if !trusted(hop, proxies) {
			return client, true
		}
	}
	return client, true
}

func trusted(ip netip.Addr, proxies []netip.Prefix) bool {
	for _, p := range proxies {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// parseHop parses "ip", "ip:port", "[ipv6]" or "[ipv6]:port", refusing zone
// IDs, and unmaps IPv4-mapped IPv6.
func parseHop(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	var ip netip.Addr
	if ap, err := netip.ParseAddrPort(s); err == nil {
		ip = ap.Addr()
	} else if a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")); err == nil {
		ip = a
	} else {
		return netip.Addr{}, false
	}
	if ip.Zone() != "" {
		return netip.Addr{}, false
	}
	return ip.Unmap(), true
}

// forwardedFor returns the for= parameter of one Forwarded element, without
// quotes, or "" (which parseHop refuses) if it has none.
func forwardedFor(elem string) string {
	for _, pair := range strings.Split(elem, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(pair), "=")
		if ok && strings.EqualFold(k, "for") {
			return strings.Trim(v, `"`)
		}
	}
	return ""
}
