package e2e

import (
	"io"
	"net"
	"slices"
	"sync"
	"time"
)

// webhookService plays the webhook's Service: it listens where the API server sends
// admission reviews and forwards each connection, TLS and all, to the webhook server
// of one of the managers that are up, the next one when a manager refuses it. Every
// manager runs the webhook, leader or not, so the admission of APITokens survives
// the loss of any one of them, as it does behind a real Service.
type webhookService struct {
	ln net.Listener

	mu       sync.Mutex
	backends []string
	next     int
}

func startWebhookService(addr string) (*webhookService, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &webhookService{ln: ln}
	go s.serve()
	return s, nil
}

// add makes addr an endpoint; remove takes it out, as a failing readiness probe would.
func (s *webhookService) add(addr string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !slices.Contains(s.backends, addr) {
		s.backends = append(s.backends, addr)
	}
}

func (s *webhookService) remove(addr string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.backends = slices.DeleteFunc(s.backends, func(b string) bool { return b == addr })
}

// order is the endpoints to try for the next connection, starting a round further
// each time.
func (s *webhookService) order() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.backends)
	out := make([]string, 0, n)
	for i := range n {
		out = append(out, s.backends[(s.next+i)%n])
	}
	s.next++
	return out
}

func (s *webhookService) serve() {
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			return
		}
		go s.forward(conn)
	}
}

func (s *webhookService) forward(in net.Conn) {
	defer in.Close()
	for _, addr := range s.order() {
		out, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			continue
		}
		defer out.Close()
		done := make(chan struct{}, 2)
		pipe := func(dst, src net.Conn) {
			_, _ = io.Copy(dst, src)
			if tc, ok := dst.(*net.TCPConn); ok {
				_ = tc.CloseWrite()
			}
			done <- struct{}{}
		}
		go pipe(out, in)
		go pipe(in, out)
		<-done
		<-done
		return
	}
}

// Close stops listening; connections in flight finish on their own.
func (s *webhookService) Close() { _ = s.ln.Close() }
