package bearer

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
)

// from returns a client whose connections come from the loopback address ip.
func from(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
}

// TestClientAddr reads forwarding headers over a real listener, from a trusted and
// an untrusted peer, with the header lines a client and its proxies write.
func TestClientAddr(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
	const xff = "X-Forwarded-For"
	for _, tc := range []struct {
		name    string
		peer    string
		header  string
		trusted []netip.Prefix
		lines   []string
		want    string
	}{
		{"no header configured", "127.0.0.1", "", trusted, []string{"1.2.3.4"}, "127.0.0.1"},
		{"no trusted proxies", "127.0.0.1", xff, nil, []string{"1.2.3.4"}, "127.0.0.1"},
		{"untrusted peer", "127.0.0.9", xff, trusted, []string{"1.2.3.4"}, "127.0.0.9"},
		{"trusted peer, no header", "127.0.0.1", xff, trusted, nil, "127.0.0.1"},
		{"one address", "127.0.0.1", xff, trusted, []string{"1.2.3.4"}, "1.2.3.4"},
		{"the client's own list is left of the proxy's", "127.0.0.1", xff, trusted, []string{"6.6.6.6, 1.2.3.4"}, "1.2.3.4"},
		{"trusted hops are skipped", "127.0.0.1", xff, trusted, []string{"1.2.3.4, 10.1.2.3, 10.9.9.9"}, "1.2.3.4"},
		// A proxy that appends its own line: reading only the first line would let
		// the client choose its address.
		{"the proxy's line after the client's", "127.0.0.1", xff, trusted, []string{"6.6.6.6", "1.2.3.4"}, "1.2.3.4"},
		{"lines and lists together", "127.0.0.1", xff, trusted, []string{"6.6.6.6, 7.7.7.7", "1.2.3.4, 10.0.0.1", "10.0.0.2"}, "1.2.3.4"},
		{"every address trusted: the left-most", "127.0.0.1", xff, trusted, []string{"10.0.0.3, 10.0.0.2"}, "10.0.0.3"},
		{"garbage ends the walk at the hop that added it", "127.0.0.1", xff, trusted, []string{"1.2.3.4, not-an-ip, 10.0.0.7"}, "10.0.0.7"},
		{"garbage from the client itself", "127.0.0.1", xff, trusted, []string{"<script>"}, "127.0.0.1"},
		{"empty elements", "127.0.0.1", xff, trusted, []string{" , 1.2.3.4 ,, "}, "1.2.3.4"},
		{"with a port", "127.0.0.1", xff, trusted, []string{"1.2.3.4:5678"}, "1.2.3.4"},
		{"IPv6 in brackets", "127.0.0.1", xff, trusted, []string{"[2001:db8::1]"}, "2001:db8::1"},
		{"IPv6 with a port", "127.0.0.1", xff, trusted, []string{"[2001:db8::1]:443"}, "2001:db8::1"},
		{"IPv4-mapped IPv6", "127.0.0.1", xff, trusted, []string{"::ffff:1.2.3.4"}, "1.2.3.4"},
		{"trusted IPv6 hop", "127.0.0.1", xff, trusted, []string{"2001:db8::1, fd00::5"}, "2001:db8::1"},
		{"X-Real-IP", "127.0.0.1", "X-Real-IP", trusted, []string{"1.2.3.4"}, "1.2.3.4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.WriteString(w, ClientAddr(r, tc.header, tc.trusted))
			}))
			defer srv.Close()
			req, err := http.NewRequest(http.MethodGet, srv.URL, nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range tc.lines {
				req.Header.Add(xff, l)
				req.Header.Add("X-Real-IP", l)
			}
			resp, err := from(tc.peer).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			got, _ := io.ReadAll(resp.Body)
			if string(got) != tc.want {
				t.Errorf("client %q, want %q", got, tc.want)
			}
		})
	}
}

// TestForwardedFor: a hop passes on the lines it received and appends its peer, which
// ClientAddr at the next hop, trusting this one, reads back as the client.
func TestForwardedFor(t *testing.T) {
	for _, tc := range []struct {
		lines []string
		want  string
	}{
		{nil, "127.0.0.9"},
		{[]string{"1.2.3.4"}, "1.2.3.4, 127.0.0.9"},
		{[]string{"1.2.3.4, 10.0.0.1", "10.0.0.2"}, "1.2.3.4, 10.0.0.1, 10.0.0.2, 127.0.0.9"},
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, ForwardedFor(r))
		}))
		req, err := http.NewRequest(http.MethodGet, srv.URL, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range tc.lines {
			req.Header.Add("X-Forwarded-For", l)
		}
		resp, err := from("127.0.0.9").Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		srv.Close()
		if string(got) != tc.want {
			t.Errorf("lines %q: ForwardedFor = %q, want %q", tc.lines, got, tc.want)
		}
		// Read at a validator that trusts this hop: the peer this hop saw.
		next := httptest.NewRequest(http.MethodGet, "/", nil)
		next.RemoteAddr = "127.0.0.1:1234"
		next.Header.Set("X-Forwarded-For", string(got))
		if c := ClientAddr(next, "X-Forwarded-For", []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}); c != "127.0.0.9" {
			t.Errorf("lines %q: the next hop reads client %q, want 127.0.0.9", tc.lines, c)
		}
	}
}
