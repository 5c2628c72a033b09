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
// not is the client. A hop is an IP, IPv4 with a port, or IPv6 in brackets
// with or without a port; one that does not parse, or carries a zone ID,
// ends the walk at the last trusted hop. IPv4-mapped IPv6 addresses are
// unmapped. However many hops the header holds, the walk allocates nothing
// but, for a hop that ends it as garbage, the parser's error. It reports
// false only if RemoteAddr itself does not parse.
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
	// The walk from the right: each hop in turn becomes the client, until
	// one is not a trusted proxy. Garbage stops it at the last trusted hop.
	client := remote
	walk := func(hop string) bool {
		ip, ok := parseHop(hop)
		if !ok {
			return false
		}
		client = ip
		return trusted(ip, proxies)
	}
	switch http.CanonicalHeaderKey(header) {
	case "X-Forwarded-For":
		fromRight(r.Header.Values("X-Forwarded-For"), walk)
	case "X-Real-Ip":
		if vs := r.Header.Values("X-Real-Ip"); len(vs) == 1 { // several: one was forged; trust none
			walk(vs[0])
		}
	case "Forwarded":
		fromRight(r.Header.Values("Forwarded"), func(elem string) bool { return walk(forwardedFor(elem)) })
	}
	return client, true
}

// fromRight calls each with the comma-separated elements of the header
// lines vs, the last first, until it returns false. It allocates nothing:
// a client behind a trusted proxy controls the left of the header, and a
// megabyte of commas, split, would be a million strings.
func fromRight(vs []string, each func(string) bool) {
	for i := len(vs) - 1; i >= 0; i-- {
		v := vs[i]
		for {
			j := strings.LastIndexByte(v, ',')
			if !each(v[j+1:]) {
				return
			}
			if j < 0 {
				break
			}
			v = v[:j]
		}
	}
}

func trusted(ip netip.Addr, proxies []netip.Prefix) bool {
	for _, p := range proxies {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// parseHop parses "ip", "ipv4:port", "[ipv6]" or "[ipv6]:port", refusing
// zone IDs and IPv4 in brackets, and unmaps IPv4-mapped IPv6. It tells the
// forms apart by their brackets and colons rather than by trying parsers in
// turn: a failed parse allocates its error, and a header may hold many hops.
func parseHop(s string) (netip.Addr, bool) {
	host := strings.TrimSpace(s)
	bracketed := false
	if rest, ok := strings.CutPrefix(host, "["); ok {
		h, port, ok := strings.Cut(rest, "]")
		if !ok || (port != "" && (port[0] != ':' || !validPort(port[1:]))) {
			return netip.Addr{}, false
		}
		host, bracketed = h, true
	} else if i := strings.IndexByte(host, ':'); i >= 0 && strings.IndexByte(host[i+1:], ':') < 0 {
		if !validPort(host[i+1:]) { // one colon: IPv4 and a port
			return netip.Addr{}, false
		}
		host = host[:i]
	}
	if host == "" {
		return netip.Addr{}, false
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || ip.Zone() != "" || (bracketed && !ip.Is6()) { // brackets are for IPv6
		return netip.Addr{}, false
	}
	return ip.Unmap(), true
}

// validPort reports whether p is a decimal port number, 0 to 65535 (leading
// zeros allowed, as netip.ParseAddrPort allows them).
func validPort(p string) bool {
	if p == "" {
		return false
	}
	n := 0
	for _, c := range []byte(p) {
		if c < '0' || c > '9' {
			return false
		}
		if n = n*10 + int(c-'0'); n > 65535 {
			return false
		}
	}
	return true
}

// forwardedFor returns the for= parameter of one Forwarded element, without
// quotes, or "" (which parseHop refuses) if it has none.
func forwardedFor(elem string) string {
	for elem != "" {
		var pair string
		pair, elem, _ = strings.Cut(elem, ";")
		k, v, ok := strings.Cut(strings.TrimSpace(pair), "=")
		if ok && strings.EqualFold(k, "for") {
			return strings.Trim(v, `"`)
		}
	}
	return ""
}
