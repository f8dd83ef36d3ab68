package bearer

import (
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/apitoken-operator/apitoken-operator/pkg/validatorapi"
)

// ClientAddr is the address of the client that sent r, the one the failed-attempt
// limit counts against and the audit records. It is the peer, unless the peer is one
// of trusted: then the addresses in every line of header (X-Forwarded-For, or a
// single-valued one such as X-Real-IP) are read from the right, each hop's proxy
// having appended the address it saw, and the first one that is not trusted is the
// client. Reading every line matters: a proxy may append a line of its own after the
// client's, and the client's lines say whatever the client likes. When every address
// is trusted the left-most is the client; a value that is not an address ends the
// walk at the hop that appended it.
func ClientAddr(r *http.Request, header string, trusted []netip.Prefix) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if header == "" || len(trusted) == 0 {
		return host
	}
	peer, err := netip.ParseAddr(host)
	if err != nil || !contains(trusted, peer) {
		return host
	}
	client := host
	values := r.Header.Values(header)
	for i := len(values) - 1; i >= 0; i-- {
		rest := values[i]
		for rest != "" {
			elem := rest
			rest = ""
			if j := strings.LastIndexByte(elem, ','); j >= 0 {
				elem, rest = elem[j+1:], elem[:j]
			}
			if elem = strings.TrimSpace(elem); elem == "" {
				continue
			}
			a, ok := parseHop(elem)
			if !ok {
				return client
			}
			client = a.String()
			if !contains(trusted, a) {
				return client
			}
		}
	}
	return client
}

// parseHop reads one address of a forwarding header: an IP address, with a port or
// in brackets as some proxies write them.
func parseHop(s string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		if a, err := netip.ParseAddr(s[1 : len(s)-1]); err == nil {
			return a.Unmap(), true
		}
	}
	return netip.Addr{}, false
}

func contains(prefixes []netip.Prefix, a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ForwardedFor is the X-Forwarded-For value a hop sends on when it asks the validator
// about r: the lines r arrived with, then r's peer. The validator believes it only
// from the callers its --trusted-proxies names, and then reads it as ClientAddr does.
func ForwardedFor(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	prior := r.Header.Values(validatorapi.HeaderForwardedFor)
	if len(prior) == 0 {
		return host
	}
	return strings.Join(prior, ", ") + ", " + host
}
