package middleware

import (
	"slices"
	"sync"
	"testing"
)

// keys returns the keys of c, most recently used first.
func (c *lru[K, V]) keys() []K {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []K
	for e := c.order.Front(); e != nil; e = e.Next() {
		out = append(out, e.Value.(*lruEntry[K, V]).key)
	}
	return out
}

func TestLRU(t *testing.T) {
	type op struct {
		do  string // add, get, remove
		key string
		val int
	}
	for _, tc := range []struct {
		name string
		max  int
		ops  []op
		// want is the keys left, most recently used first; got is what the last get found.
		want []string
		get  int
		ok   bool
	}{
		{"within bounds", 3, []op{{"add", "a", 1}, {"add", "b", 2}, {"get", "a", 0}}, []string{"a", "b"}, 1, true},
		{"the oldest goes", 2, []op{{"add", "a", 1}, {"add", "b", 2}, {"add", "c", 3}, {"get", "a", 0}}, []string{"c", "b"}, 0, false},
		{"a get makes an entry recent", 2, []op{{"add", "a", 1}, {"add", "b", 2}, {"get", "a", 0}, {"add", "c", 3}, {"get", "b", 0}}, []string{"c", "a"}, 0, false},
		{"an add replaces and makes recent", 2, []op{{"add", "a", 1}, {"add", "b", 2}, {"add", "a", 9}, {"add", "c", 3}, {"get", "a", 0}}, []string{"a", "c"}, 9, true},
		{"remove", 2, []op{{"add", "a", 1}, {"add", "b", 2}, {"remove", "a", 0}, {"get", "a", 0}}, []string{"b"}, 0, false},
		{"remove of an absent key", 2, []op{{"add", "a", 1}, {"remove", "x", 0}, {"get", "a", 0}}, []string{"a"}, 1, true},
		{"size one", 1, []op{{"add", "a", 1}, {"add", "b", 2}, {"get", "b", 0}}, []string{"b"}, 2, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newLRU[string, int](tc.max)
			var got int
			var ok bool
			for _, o := range tc.ops {
				switch o.do {
				case "add":
					c.Add(o.key, o.val)
				case "get":
					got, ok = c.Get(o.key)
				case "remove":
					c.Remove(o.key)
				}
			}
			if got != tc.get || ok != tc.ok {
				t.Errorf("last get = %d, %t; want %d, %t", got, ok, tc.get, tc.ok)
			}
			if k := c.keys(); !slices.Equal(k, tc.want) {
				t.Errorf("keys %v, want %v", k, tc.want)
			}
			if c.Len() != len(tc.want) || len(c.items) != len(tc.want) {
				t.Errorf("Len %d, map %d, want %d", c.Len(), len(c.items), len(tc.want))
			}
		})
	}
}

// TestLRUConcurrent is for the race detector, and checks the bound holds under load.
func TestLRUConcurrent(t *testing.T) {
	c := newLRU[int, int](8)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 1000; i++ {
				c.Add(i%20, i)
				c.Get((i + g) % 20)
				if i%7 == 0 {
					c.Remove(i % 20)
				}
			}
		}()
	}
	wg.Wait()
	if c.Len() > 8 || c.Len() != len(c.items) {
		t.Fatalf("Len %d, map %d, bound 8", c.Len(), len(c.items))
	}
}
