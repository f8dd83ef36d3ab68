package index

// hashMap maps keys to values the values themselves name, holding most of them by a
// 64-bit hash of the key instead of the key: a map slot then costs 16 bytes instead
// of the key's size plus 8 (40 for a namespace/name, 40 for a SHA-256), which at a
// hundred thousand entries is megabytes. A value whose hash another key's value
// already holds goes to an overflow map by its full key, so a collision costs a
// second lookup, never a wrong answer.
//
// It is not safe for concurrent use; the index's lock guards it.
type hashMap[K comparable, V any] struct {
	hash func(K) uint64
	// keyOf is the key of a stored value, to tell whether the value a hash holds is
	// the key's.
	keyOf    func(*V) K
	byHash   map[uint64]*V
	overflow map[K]*V
}

func newHashMap[K comparable, V any](hash func(K) uint64, keyOf func(*V) K) hashMap[K, V] {
	return hashMap[K, V]{hash: hash, keyOf: keyOf, byHash: map[uint64]*V{}, overflow: map[K]*V{}}
}

// get returns the value of k, or nil.
func (m *hashMap[K, V]) get(k K) *V {
	if v := m.byHash[m.hash(k)]; v != nil && m.keyOf(v) == k {
		return v
	}
	if len(m.overflow) == 0 {
		return nil
	}
	return m.overflow[k]
}

// put sets the value of k to v, whose key must be k. A key is held in one of the two
// maps only.
func (m *hashMap[K, V]) put(k K, v *V) {
	h := m.hash(k)
	if cur := m.byHash[h]; cur != nil && m.keyOf(cur) != k {
		m.overflow[k] = v
		return
	}
	m.byHash[h] = v
	delete(m.overflow, k)
}

// remove removes k.
func (m *hashMap[K, V]) remove(k K) {
	h := m.hash(k)
	if cur := m.byHash[h]; cur != nil && m.keyOf(cur) == k {
		delete(m.byHash, h)
		return
	}
	delete(m.overflow, k)
}

// len is the number of keys.
func (m *hashMap[K, V]) len() int { return len(m.byHash) + len(m.overflow) }
