package tokensource

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/apitoken-operator/apitoken-operator/internal/token"
)

// kubelet writes a Secret volume the way the kubelet's AtomicWriter does: a new
// timestamped directory with the files, a ..data_tmp symlink to it renamed over
// ..data, the user-visible symlinks created once, the old directory removed.
type kubelet struct {
	t   testing.TB
	dir string
}

func (k *kubelet) write(files map[string]string) {
	k.t.Helper()
	tsDir, err := os.MkdirTemp(k.dir, "..2026_11_22_06_00_00.")
	if err != nil {
		k.t.Fatal(err)
	}
	for name, content := range files {
		// Written in two halves, so a reader that looked into a directory before it
		// was published could see half a token.
		f, err := os.OpenFile(filepath.Join(tsDir, name), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
		if err != nil {
			k.t.Fatal(err)
		}
		half := len(content) / 2
		_, err1 := f.WriteString(content[:half])
		_, err2 := f.WriteString(content[half:])
		if err := f.Close(); err1 != nil || err2 != nil || err != nil {
			k.t.Fatal(err1, err2, err)
		}
	}
	old, err := os.Readlink(filepath.Join(k.dir, "..data"))
	if err != nil && !os.IsNotExist(err) {
		k.t.Fatal(err)
	}
	tmp := filepath.Join(k.dir, "..data_tmp")
	if err := os.Symlink(filepath.Base(tsDir), tmp); err != nil {
		k.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(k.dir, "..data")); err != nil {
		k.t.Fatal(err)
	}
	for name := range files {
		p := filepath.Join(k.dir, name)
		if _, err := os.Lstat(p); os.IsNotExist(err) {
			if err := os.Symlink(filepath.Join("..data", name), p); err != nil {
				k.t.Fatal(err)
			}
		}
	}
	if old != "" {
		if err := os.RemoveAll(filepath.Join(k.dir, old)); err != nil {
			k.t.Fatal(err)
		}
	}
}

// opaque returns the files of a new opaque token.
func opaque(t testing.TB) (files map[string]string, value, id string) {
	t.Helper()
	id = token.NewTokenID()
	tok, err := token.MintOpaque("apt", id)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{"token": tok.Token + "\n", "tokenID": id, "expiresAt": "2026-12-22T06:00:00Z"}, tok.Token, id
}

func newSource(t testing.TB, dir string, opts Options) *Source {
	t.Helper()
	s, err := New(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// TestKubeletUpdates replays the kubelet's update sequence many times while readers
// read: no reader ever sees an empty, torn or older token, and all end on the newest.
func TestKubeletUpdates(t *testing.T) {
	g := NewWithT(t)
	dir := t.TempDir()
	k := &kubelet{t: t, dir: dir}

	const updates = 300
	// seq maps every token written to its position, filled before it is written.
	var seq sync.Map
	files, first, _ := opaque(t)
	seq.Store(first, 0)
	k.write(files)
	src := newSource(t, dir, Options{})
	g.Expect(src.Token()).To(Equal(first))

	var (
		stop   atomic.Bool
		wg     sync.WaitGroup
		reads  atomic.Int64
		failed atomic.Value
	)
	fail := func(format string, args ...any) { failed.CompareAndSwap(nil, fmt.Sprintf(format, args...)) }
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			last := -1
			for !stop.Load() {
				cur := src.Current()
				v, err := src.Token()
				if err != nil || cur == nil || v == "" {
					fail("a reader saw no token: %v", err)
					return
				}
				_, id, err := token.ParseOpaque(cur.Value)
				if err != nil || id != cur.ID || cur.ExpiresAt.IsZero() {
					fail("a reader saw a torn token (ID %s)", cur.ID)
					return
				}
				n, ok := seq.Load(cur.Value)
				if !ok {
					fail("a reader saw a token never written (ID %s)", cur.ID)
					return
				}
				if n.(int) < last {
					fail("a reader went back from token %d to %d", last, n)
					return
				}
				last = n.(int)
				reads.Add(1)
				// Leave the writer and the watch some CPU on a small machine.
				runtime.Gosched()
			}
		}()
	}

	var newest string
	for i := 1; i <= updates; i++ {
		files, v, _ := opaque(t)
		seq.Store(v, i)
		k.write(files)
		newest = v
	}
	g.Eventually(src.Token).Should(Equal(newest))
	stop.Store(true)
	wg.Wait()
	g.Expect(failed.Load()).To(BeNil())
	g.Expect(reads.Load()).To(BeNumerically(">", 0))
	g.Expect(src.Err()).NotTo(HaveOccurred())
	t.Logf("%d updates, %d reads", updates, reads.Load())
}

// TestKeepsLastGood: an update that does not hold a whole token leaves the last good
// one in place, and the next good update is picked up.
func TestKeepsLastGood(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(files map[string]string, value string)
	}{
		{"empty token", func(f map[string]string, _ string) { f["token"] = "" }},
		{"whitespace only", func(f map[string]string, _ string) { f["token"] = " \n" }},
		{"truncated opaque token", func(f map[string]string, v string) { f["token"] = v[:len(v)-3] }},
		{"token of another ID", func(f map[string]string, _ string) { f["tokenID"] = token.NewTokenID() }},
		{"no token file", func(f map[string]string, _ string) { delete(f, "token") }},
		{"torn JWT", func(f map[string]string, _ string) { f["token"] = "eyJhbGciOiJFUzI1NiJ9.eyJqdGkiOiJ4In0." }},
		{"bad expiresAt", func(f map[string]string, _ string) { f["expiresAt"] = "tomorrow" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			dir := t.TempDir()
			k := &kubelet{t: t, dir: dir}
			files, good, _ := opaque(t)
			k.write(files)
			src := newSource(t, dir, Options{})
			g.Expect(src.Token()).To(Equal(good))

			bad, badValue, _ := opaque(t)
			tc.mutate(bad, badValue)
			k.write(bad)
			g.Eventually(src.Err).Should(HaveOccurred())
			g.Expect(src.Token()).To(Equal(good))
			g.Expect(src.Err().Error()).NotTo(ContainSubstring(badValue))

			files, next, _ := opaque(t)
			k.write(files)
			g.Eventually(src.Token).Should(Equal(next))
			g.Expect(src.Err()).NotTo(HaveOccurred())
		})
	}
}

// TestPlainDirectory: files written in place, as a bind mount or a test would, are
// read too.
func TestPlainDirectory(t *testing.T) {
	g := NewWithT(t)
	dir := t.TempDir()
	src := newSource(t, dir, Options{})
	_, err := src.Token()
	g.Expect(err).To(MatchError(ErrNoToken))

	_, v, id := opaque(t)
	g.Expect(os.WriteFile(filepath.Join(dir, "token"), []byte(v), 0o600)).To(Succeed())
	g.Eventually(src.Token).Should(Equal(v))
	g.Expect(src.Current().ID).To(Equal(id))
	g.Expect(src.Current().ExpiresAt.IsZero()).To(BeTrue())
}

// fakeClock drives a Source's clock and resync timer from a Kubernetes fake clock.
type fakeClock struct{ *clocktesting.FakeClock }

func (c fakeClock) NewTicker(d time.Duration) Ticker { return c.FakeClock.NewTicker(d) }

// TestResync: a change the watch cannot see (a file rewritten inside the timestamped
// directory, which is not watched) is picked up by the periodic re-read.
func TestResync(t *testing.T) {
	g := NewWithT(t)
	dir := t.TempDir()
	k := &kubelet{t: t, dir: dir}
	files, first, _ := opaque(t)
	k.write(files)
	clk := clocktesting.NewFakeClock(time.Date(2026, 11, 22, 6, 0, 0, 0, time.UTC))
	src := newSource(t, dir, Options{Clock: fakeClock{clk}, ResyncInterval: time.Minute})
	g.Expect(src.Token()).To(Equal(first))

	ts, err := os.Readlink(filepath.Join(dir, "..data"))
	g.Expect(err).NotTo(HaveOccurred())
	_, next, id := opaque(t)
	for name, content := range map[string]string{"tokenID": id, "token": next} {
		tmp := filepath.Join(dir, ts, name+".tmp")
		g.Expect(os.WriteFile(tmp, []byte(content), 0o644)).To(Succeed())
		g.Expect(os.Rename(tmp, filepath.Join(dir, ts, name))).To(Succeed())
	}
	g.Eventually(func() string {
		clk.Step(time.Minute)
		v, _ := src.Token()
		return v
	}).Should(Equal(next))
	g.Expect(src.Current().ReadAt.After(clk.Now().Add(-2 * time.Minute))).To(BeTrue())
}

// TestChanged: Changed fires and OnChange is called once per new token, not for a
// rewrite of the same token.
func TestChanged(t *testing.T) {
	g := NewWithT(t)
	dir := t.TempDir()
	k := &kubelet{t: t, dir: dir}
	files, first, _ := opaque(t)
	k.write(files)
	var mu sync.Mutex
	var seen []string
	src := newSource(t, dir, Options{OnChange: func(tok *Token) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, tok.ID)
	}})
	seenIDs := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), seen...)
	}
	g.Expect(src.Token()).To(Equal(first))
	firstID := src.Current().ID

	ch := src.Changed()
	k.write(files) // the same token again: no change, as seen below

	files2, second, id2 := opaque(t)
	k.write(files2)
	g.Eventually(ch).Should(BeClosed())
	g.Expect(src.Token()).To(Equal(second))
	g.Expect(seenIDs()).To(Equal([]string{firstID, id2}))
	g.Expect(src.Changed()).NotTo(BeClosed())
}

// TestWait: Wait returns once the first token arrives, and gives up with ctx.
func TestWait(t *testing.T) {
	g := NewWithT(t)
	dir := t.TempDir()
	src := newSource(t, dir, Options{})

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := src.Wait(ctx)
	g.Expect(err).To(MatchError(context.Canceled))

	got := make(chan *Token, 1)
	go func() {
		tok, _ := src.Wait(context.Background())
		got <- tok
	}()
	files, v, _ := opaque(t)
	(&kubelet{t: t, dir: dir}).write(files)
	g.Eventually(got).Should(Receive(HaveField("Value", v)))
}

// TestTransport: every request carries the token of the moment; without a token
// nothing is sent.
func TestTransport(t *testing.T) {
	g := NewWithT(t)
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, r.Header.Get("Authorization"))
	}))
	t.Cleanup(srv.Close)
	received := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), got...)
	}

	dir := t.TempDir()
	k := &kubelet{t: t, dir: dir}
	src := newSource(t, dir, Options{})
	c := NewClient(src)
	resp, err := c.Get(srv.URL)
	if err == nil {
		_ = resp.Body.Close()
	}
	g.Expect(err).To(MatchError(ErrNoToken))
	g.Expect(received()).To(BeEmpty())

	files, first, _ := opaque(t)
	k.write(files)
	g.Eventually(src.Token).Should(Equal(first))
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	resp, err = c.Do(req)
	g.Expect(err).NotTo(HaveOccurred())
	_ = resp.Body.Close()
	g.Expect(req.Header.Get("Authorization")).To(BeEmpty(), "the caller's request is not modified")

	files, second, _ := opaque(t)
	k.write(files)
	g.Eventually(src.Token).Should(Equal(second))
	resp, err = c.Get(srv.URL)
	g.Expect(err).NotTo(HaveOccurred())
	_ = resp.Body.Close()
	g.Expect(received()).To(Equal([]string{"Bearer " + first, "Bearer " + second}))
}

// BenchmarkToken measures the read path every request takes.
func BenchmarkToken(b *testing.B) {
	dir := b.TempDir()
	files, _, _ := opaque(b)
	(&kubelet{t: b, dir: dir}).write(files)
	src := newSource(b, dir, Options{})
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := src.Token(); err != nil {
				b.Fatal(err)
			}
		}
	})
}
