package index

import (
	"hash/maphash"
	"runtime"
	"slices"
	"sync"
	"unique"
	"weak"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/pkg/validatorapi"
)

// grant is what a record's token grants and how it was minted: everything about it
// that thousands of tokens of a cluster hold alike (a tenant, a role, the same scopes
// and audiences, the issuer's current key). Records point to one shared, immutable
// grant instead of each holding a dozen strings and three slices.
type grant struct {
	format tokensv1.TokenFormat
	// signingKeyID is interned: every grant of an issuer names one of its few keys.
	signingKeyID unique.Handle[string]
	// hasDigest is whether the status recorded the token's digest (Record.digest).
	hasDigest   bool
	tenant      string
	subTenant   string
	role        string
	memberships []validatorapi.Membership
	scopes      []string
	audiences   []string
}

func (g *grant) equal(o *grant) bool {
	return g.format == o.format && g.signingKeyID == o.signingKeyID && g.hasDigest == o.hasDigest &&
		g.tenant == o.tenant && g.subTenant == o.subTenant && g.role == o.role &&
		slices.Equal(g.memberships, o.memberships) && slices.Equal(g.scopes, o.scopes) && slices.Equal(g.audiences, o.audiences)
}

// hash is a hash of g's value, strings separated and lists counted so that different
// grants seldom hash alike; when they do, equal tells them apart.
func (g *grant) hash() uint64 {
	var h maphash.Hash
	h.SetSeed(seed)
	str := func(s string) {
		h.WriteString(s)
		h.WriteByte(0)
	}
	str(string(g.format))
	str(g.signingKeyID.Value())
	str(g.tenant)
	str(g.subTenant)
	str(g.role)
	if g.hasDigest {
		h.WriteByte(1)
	}
	for _, m := range g.memberships {
		str(m.Tenant)
		str(m.SubTenant)
		str(m.Role)
	}
	h.WriteByte(byte(len(g.memberships)))
	for _, list := range [][]string{g.scopes, g.audiences} {
		for _, s := range list {
			str(s)
		}
		h.WriteByte(byte(len(list)))
	}
	return h.Sum64()
}

// grants holds one grant for each distinct value, weakly: a grant no record points to
// any more is collected, and its entry goes with it. The unique package cannot hold
// grants, whose slices are not comparable, so they are held by a hash of their value.
var grants = grantTable{m: map[uint64]weak.Pointer[grant]{}}

type grantTable struct {
	mu sync.Mutex
	m  map[uint64]weak.Pointer[grant]
}

// shareGrant returns the one grant equal to g, storing a compact copy of g when
// there is none yet. A grant whose hash another grant already holds is not shared:
// that costs its bytes, never a wrong answer.
func shareGrant(g grant) *grant {
	h := g.hash()
	grants.mu.Lock()
	defer grants.mu.Unlock()
	held := grants.m[h].Value()
	if held != nil && held.equal(&g) {
		return held
	}
	p := new(grant)
	*p = g
	p.format = internFormat(p.format)
	p.memberships, p.scopes, p.audiences = exact(p.memberships), exact(p.scopes), exact(p.audiences)
	if held == nil {
		grants.m[h] = weak.Make(p)
		runtime.AddCleanup(p, dropGrant, h)
	}
	return p
}

// dropGrant removes the entry of a collected grant, unless a grant made since holds
// it.
func dropGrant(h uint64) {
	grants.mu.Lock()
	defer grants.mu.Unlock()
	if grants.m[h].Value() == nil {
		delete(grants.m, h)
	}
}

// exact returns s in a slice of its own length, or nil when it is empty: the decoder
// leaves room to grow, which a shared grant would hold for good.
func exact[T any](s []T) []T {
	switch {
	case len(s) == 0:
		return nil
	case cap(s) > len(s):
		return slices.Clone(s)
	}
	return s
}

// internFormat returns the package constant for the known formats, so that grants do
// not each keep a decoded copy of "JWT" or "Opaque".
func internFormat(f tokensv1.TokenFormat) tokensv1.TokenFormat {
	switch f {
	case tokensv1.FormatJWT:
		return tokensv1.FormatJWT
	case tokensv1.FormatOpaque:
		return tokensv1.FormatOpaque
	}
	return f
}
