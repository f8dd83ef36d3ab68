// Package index is the validator's view of the cluster: every token that may still be
// accepted, by token ID and by opaque-token hash, and every issuer's keys and roles.
// Informer event handlers write it; every request reads it. A generation counter,
// bumped on every change that can alter a decision, lets callers cache decisions and
// notice at once when they may have gone stale.
package index

import (
	"crypto"
	"crypto/sha256"
	"encoding/binary"
	"hash/maphash"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/token"
)

// Config is what the index's verifier checks besides the keys.
type Config struct {
	// Audiences, when set, are the audiences a JWT must carry one of.
	Audiences []string
	// Clock is the verifier's clock.
	Clock clock.PassiveClock
}

// Index holds the tokens and issuers. It is safe for concurrent use: lookups take a
// read lock; writes come from the informers, which are rare next to lookups.
type Index struct {
	verifier *token.Verifier
	gen      atomic.Uint64

	mu   sync.RWMutex
	sets hashMap[types.NamespacedName, TokenSet]
	byID hashMap[string, Record]
	// byHash holds opaque tokens' records by the raw SHA-256 of the secret.
	byHash  hashMap[[sha256.Size]byte, Record]
	issuers map[string]*Issuer
	// byKey maps a kid to the issuers publishing it: usually one, but a key set
	// copied between issuers must not make one of them unusable.
	byKey map[string][]*Issuer
}

// New returns an empty index.
func New(cfg Config) *Index {
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	x := &Index{
		sets:    newHashMap(hashName, (*TokenSet).Key),
		byID:    newHashMap(hashID, func(r *Record) string { return r.TokenID }),
		byHash:  newHashMap(hashDigest, func(r *Record) [sha256.Size]byte { return r.digest }),
		issuers: map[string]*Issuer{},
		byKey:   map[string][]*Issuer{},
	}
	// The iss claim is left to the caller, who checks it against the issuer of the
	// key that verified: the key set already pins who signed.
	x.verifier = &token.Verifier{Keys: x, Audiences: cfg.Audiences, Now: cfg.Clock.Now}
	return x
}

// seed keys the hashes of the index's maps and of the grant table, so that nobody
// can choose names or grants that collide.
var seed = maphash.MakeSeed()

// hashName is the hash the index holds an APIToken's set by.
func hashName(k types.NamespacedName) uint64 {
	var h maphash.Hash
	h.SetSeed(seed)
	h.WriteString(k.Namespace)
	h.WriteByte('/') // in neither a namespace nor a name
	h.WriteString(k.Name)
	return h.Sum64()
}

// hashID is the hash the index holds a token by its ID.
func hashID(id string) uint64 { return maphash.String(seed, id) }

// hashDigest is the hash the index holds an opaque token by: its SHA-256 is already
// uniform, so its first 8 bytes serve.
func hashDigest(d [sha256.Size]byte) uint64 { return binary.LittleEndian.Uint64(d[:8]) }

// Verifier verifies a JWT against the keys of every issuer, picking the key by the
// token's kid in one pass over the token. The caller must check that the verified iss
// claim is the URL of the issuer that owns the verifying key (IssuerForKey).
func (x *Index) Verifier() *token.Verifier { return x.verifier }

// PublicKey implements token.KeySet over every issuer's published keys. A kid is the
// key's RFC 7638 thumbprint, so issuers that publish the same kid publish the same
// key, and the first one serves.
func (x *Index) PublicKey(kid string) (crypto.PublicKey, token.Algorithm, bool) {
	x.mu.RLock()
	cands := x.byKey[kid]
	x.mu.RUnlock()
	if len(cands) == 0 {
		return nil, "", false
	}
	return cands[0].Keys.PublicKey(kid)
}

// Generation changes whenever a token or an issuer changed in a way that can alter a
// decision. A decision cached at generation g is still right while Generation is g.
func (x *Index) Generation() uint64 { return x.gen.Load() }

// Token returns the record of token ID id, or nil.
func (x *Index) Token(id string) *Record {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.byID.get(id)
}

// TokenSet returns what the index holds of the APIToken key, or nil.
func (x *Index) TokenSet(key types.NamespacedName) *TokenSet {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.sets.get(key)
}

// ByHash returns the record of the opaque token whose secret hashes to hash
// ("sha256:<hex>"), or nil.
func (x *Index) ByHash(hash string) *Record {
	raw, ok := rawHash(hash)
	if !ok {
		return nil
	}
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.byHash.get(raw)
}

// Issuer returns the issuer named name, or nil.
func (x *Index) Issuer(name string) *Issuer {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.issuers[name]
}

// IssuerForKey returns the issuer that publishes kid, preferring the one whose URL is
// iss when several do, or nil.
func (x *Index) IssuerForKey(kid, iss string) *Issuer {
	x.mu.RLock()
	defer x.mu.RUnlock()
	cands := x.byKey[kid]
	for _, c := range cands {
		if c.URL == iss {
			return c
		}
	}
	if len(cands) > 0 {
		return cands[0]
	}
	return nil
}

// Issuers returns every issuer, by name.
func (x *Index) Issuers() []*Issuer {
	x.mu.RLock()
	out := make([]*Issuer, 0, len(x.issuers))
	for _, iss := range x.issuers {
		out = append(out, iss)
	}
	x.mu.RUnlock()
	slices.SortFunc(out, func(a, b *Issuer) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Len returns the number of indexed tokens.
func (x *Index) Len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.byID.len()
}

// PutTokenSet adds or replaces the tokens of one APIToken. An update that changes no
// token (a status write of lastUsedTime or conditions) keeps the existing records and
// the generation, so the validator's decision cache survives the validator's own
// usage reports. It returns the IDs of tokens that another APIToken already holds:
// those keep their first owner and are reported, since only a copied status can
// cause them.
func (x *Index) PutTokenSet(ts *TokenSet) (conflicts []string) {
	key := ts.Key()
	x.mu.Lock()
	defer x.mu.Unlock()
	old := x.sets.get(key)
	if old != nil && old.sameTokens(ts) {
		atomic.StoreInt64(&old.lastUsed, atomic.LoadInt64(&ts.lastUsed))
		return nil
	}
	if old != nil {
		x.removeLocked(old)
	}
	x.sets.put(key, ts)
	for i := range ts.Tokens {
		r := &ts.Tokens[i]
		if prev := x.byID.get(r.TokenID); prev != nil && prev.Owner != ts {
			conflicts = append(conflicts, r.TokenID)
			continue
		}
		x.byID.put(r.TokenID, r)
		if r.Format() == tokensv1.FormatOpaque && r.grant.hasDigest {
			if x.byHash.get(r.digest) == nil {
				x.byHash.put(r.digest, r)
			}
		}
	}
	x.gen.Add(1)
	return conflicts
}

// DeleteTokenSet removes the tokens of an APIToken.
func (x *Index) DeleteTokenSet(key types.NamespacedName) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if old := x.sets.get(key); old != nil {
		x.removeLocked(old)
		x.sets.remove(key)
		x.gen.Add(1)
	}
}

func (x *Index) removeLocked(ts *TokenSet) {
	for i := range ts.Tokens {
		r := &ts.Tokens[i]
		if x.byID.get(r.TokenID) == r {
			x.byID.remove(r.TokenID)
		}
		if r.grant.hasDigest && x.byHash.get(r.digest) == r {
			x.byHash.remove(r.digest)
		}
	}
}

// PutIssuer adds or replaces an issuer and returns what the index now holds for it,
// and whether that changed. A status write that changes nothing the validator uses
// keeps the existing Issuer and the generation.
func (x *Index) PutIssuer(cti *tokensv1.ClusterTokenIssuer) (iss *Issuer, changed bool) {
	stripped := stripIssuer(cti)
	x.mu.Lock()
	defer x.mu.Unlock()
	old := x.issuers[cti.Name]
	if old != nil && equality.Semantic.DeepEqual(old.spec, stripped.Spec) && equality.Semantic.DeepEqual(old.status, stripped.Status) {
		return old, false
	}
	iss = newIssuer(stripped, old)
	if old != nil {
		x.removeIssuerLocked(old)
	}
	x.issuers[iss.Name] = iss
	if iss.Keys != nil {
		for _, k := range iss.JWKS {
			x.byKey[k.Kid] = append(x.byKey[k.Kid], iss)
		}
	}
	x.gen.Add(1)
	return iss, true
}

// DeleteIssuer removes an issuer: its JWTs stop verifying and its opaque tokens are
// refused, since no role graph is left to judge them by.
func (x *Index) DeleteIssuer(name string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if old := x.issuers[name]; old != nil {
		x.removeIssuerLocked(old)
		delete(x.issuers, name)
		x.gen.Add(1)
	}
}

func (x *Index) removeIssuerLocked(iss *Issuer) {
	for _, k := range iss.JWKS {
		rest := slices.DeleteFunc(slices.Clone(x.byKey[k.Kid]), func(i *Issuer) bool { return i == iss })
		if len(rest) == 0 {
			delete(x.byKey, k.Kid)
		} else {
			x.byKey[k.Kid] = rest
		}
	}
}

// Transform is the cache TransformFunc for both kinds the validator watches: an
// APIToken becomes a TokenSet and a ClusterTokenIssuer loses everything the validator
// does not read (managed fields, annotations, labels, conditions other than Ready). client-go may hand it an object it already transformed; that is returned
// as is.
func Transform(obj any) (any, error) {
	switch o := obj.(type) {
	case *tokensv1.APIToken:
		return NewTokenSet(o), nil
	case *tokensv1.ClusterTokenIssuer:
		return stripIssuer(o), nil
	}
	return obj, nil
}
