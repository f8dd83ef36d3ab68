package index

import (
	"math/rand/v2"
	"testing"

	. "github.com/onsi/gomega"
)

// entry is a value that names its key, as sets and records do.
type entry struct {
	key string
	n   int
}

// TestHashMap runs random puts and removes against a plain map, under hashes that
// collide not at all, often, and always: every key must read back its value whatever
// the hash does, and len count each key once.
func TestHashMap(t *testing.T) {
	for _, tc := range []struct {
		name string
		hash func(string) uint64
	}{
		{"distinct", hashID},
		{"by length", func(k string) uint64 { return uint64(len(k)) }},
		{"constant", func(string) uint64 { return 7 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			m := newHashMap(tc.hash, func(e *entry) string { return e.key })
			ref := map[string]*entry{}
			rnd := rand.New(rand.NewPCG(1, 2))
			keys := []string{"a", "b", "cc", "dd", "eee", "f", "gg", "hhh", "i", "jj"}
			for step := range 2000 {
				k := keys[rnd.IntN(len(keys))]
				if rnd.IntN(3) == 0 {
					m.remove(k)
					delete(ref, k)
				} else {
					e := &entry{key: k, n: step}
					m.put(k, e)
					ref[k] = e
				}
				g.Expect(m.len()).To(Equal(len(ref)), "step %d", step)
				for _, k := range keys {
					g.Expect(m.get(k)).To(BeIdenticalTo(ref[k]), "step %d, key %q", step, k)
				}
			}
		})
	}
}

// A key whose hash another key holds is found again after that key leaves, and
// putting it again moves it to the hash without leaving a second copy.
func TestHashMapOverflowOutlivesHolder(t *testing.T) {
	g := NewWithT(t)
	m := newHashMap(func(string) uint64 { return 1 }, func(e *entry) string { return e.key })
	a, b := &entry{key: "a"}, &entry{key: "b"}
	m.put("a", a)
	m.put("b", b)
	m.remove("a")
	g.Expect(m.get("a")).To(BeNil())
	g.Expect(m.get("b")).To(BeIdenticalTo(b))
	b2 := &entry{key: "b", n: 1}
	m.put("b", b2)
	g.Expect(m.get("b")).To(BeIdenticalTo(b2))
	g.Expect(m.len()).To(Equal(1))
	m.remove("b")
	g.Expect(m.get("b")).To(BeNil())
	g.Expect(m.len()).To(BeZero())
}
