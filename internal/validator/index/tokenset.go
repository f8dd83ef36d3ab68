package index

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unique"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/policy"
	"github.com/apitoken-operator/apitoken-operator/internal/token"
	"github.com/apitoken-operator/apitoken-operator/pkg/validatorapi"
)

// TokenSet is what the validator keeps of an APIToken: who owns the tokens and the
// tokens that may still be accepted, nothing else. The cache's transform turns every
// APIToken into a TokenSet before the informer stores it, so the informer's store
// and the index share one small copy instead of holding a full APIToken each.
//
// An index of many thousand APITokens pays for every byte of a set and its records
// (see TestMemoryPerToken): what APITokens hold alike is shared (setMeta, grant),
// what is their own is held inline, and one or two records share the set's
// allocation.
//
// A TokenSet is immutable once built, except for the two usage timestamps, which are
// read and written atomically.
type TokenSet struct {
	Name string
	UID  types.UID
	// meta is what the set holds that APITokens hold alike.
	meta unique.Handle[setMeta]
	// resourceVersion is metadata.resourceVersion when it is a number written the
	// usual way (an etcd revision); 0 when it is empty or meta holds it as written.
	resourceVersion uint64
	// Tokens are status.current (first, when set) then status.previousTokens.
	Tokens []Record
	// issuedAt is when status.current was issued, in Unix seconds; 0 without one.
	issuedAt int64

	// lastUsed is status.lastUsedTime in Unix seconds, as some validator replica
	// last reported it.
	lastUsed int64
	// marked is when this replica last queued a usage report, in Unix seconds.
	marked int64
}

// setMeta is what a TokenSet holds that many APITokens hold alike, interned as one
// value: one handle instead of three strings and a flag per set.
type setMeta struct {
	namespace string
	// issuer is the ClusterTokenIssuer of the tokens (spec.issuerRef.name).
	issuer string
	// creator is who created the APIToken (the apitoken.dev/created-by annotation
	// the admission webhook sets).
	creator string
	// revoked is spec.revoked, or the object is being deleted.
	revoked bool
	// resourceVersion is set only when the set's resourceVersion field cannot hold
	// it, which makes the value the set's own; the API server never writes one.
	resourceVersion string
}

// same reports whether m and o are of the same APIToken state, whatever their
// resource versions.
func (m setMeta) same(o setMeta) bool {
	return m.namespace == o.namespace && m.issuer == o.issuer && m.creator == o.creator && m.revoked == o.revoked
}

// Record is one issued token: enough to recognise it and to say whom it identifies.
// Times are Unix seconds and the digest is held inline; what it grants is a shared
// grant.
type Record struct {
	TokenID string
	grant   *grant
	// Owner is the TokenSet that holds the record.
	Owner     *TokenSet
	expiresAt int64
	// retireAt is when a previous token stops being accepted; 0 for the current one.
	retireAt int64
	// digest is the raw SHA-256 the presented token must match: for opaque tokens of
	// the secret part (status tokenHash), for JWTs of the whole token (status
	// digest). The grant says whether there is one: the status may hold none, as for
	// JWTs minted before digests were recorded.
	digest [sha256.Size]byte
}

// Format is the token's format.
func (r *Record) Format() tokensv1.TokenFormat { return r.grant.format }

// SigningKeyID is, for JWTs, the kid of the key that signed it.
func (r *Record) SigningKeyID() string { return r.grant.signingKeyID.Value() }

// Tenant is a single-tenant token's tenant; empty for a token of several tenants.
func (r *Record) Tenant() string { return r.grant.tenant }

// SubTenant is a single-tenant token's sub-tenant, if it has one.
func (r *Record) SubTenant() string { return r.grant.subTenant }

// Role is a single-tenant token's role; empty for a token of several tenants.
func (r *Record) Role() string { return r.grant.role }

// Memberships are a multi-tenant token's; nil for a single-tenant token. The slice is
// shared by every record of the same grant: callers must not modify it.
func (r *Record) Memberships() []validatorapi.Membership { return r.grant.memberships }

// Scopes are the token's scopes; shared, like Memberships.
func (r *Record) Scopes() []string { return r.grant.scopes }

// Audiences are the token's audiences; shared, like Memberships.
func (r *Record) Audiences() []string { return r.grant.audiences }

// Hash is, for opaque tokens, "sha256:<hex>" of the secret part, the form
// token.VerifyOpaque compares with; "" for JWTs or an unreadable status hash.
func (r *Record) Hash() string {
	if r.Format() != tokensv1.FormatOpaque || !r.grant.hasDigest {
		return ""
	}
	var b [len(hashPrefix) + 2*sha256.Size]byte
	copy(b[:], hashPrefix)
	hex.Encode(b[len(hashPrefix):], r.digest[:])
	return string(b[:])
}

// HasDigest reports whether the record binds its JWT by digest.
func (r *Record) HasDigest() bool { return r.Format() == tokensv1.FormatJWT && r.grant.hasDigest }

// MatchesDigest reports whether sum (token.DigestSum of a presented JWT) is the
// digest the record binds, in constant time. The digest is not secret; the constant
// time costs nothing and leaves no question.
func (r *Record) MatchesDigest(sum [sha256.Size]byte) bool {
	return r.HasDigest() && subtle.ConstantTimeCompare(sum[:], r.digest[:]) == 1
}

// ExpiresAt is when the token expires.
func (r *Record) ExpiresAt() time.Time { return time.Unix(r.expiresAt, 0) }

// RetireAt is when a previous token stops being accepted; zero for the current one.
func (r *Record) RetireAt() time.Time {
	if r.retireAt == 0 {
		return time.Time{}
	}
	return time.Unix(r.retireAt, 0)
}

// NotAfter is the instant from which the record is refused: its expiry or, for a
// previous token, its retirement, whichever comes first.
func (r *Record) NotAfter() time.Time {
	if r.retireAt != 0 && r.retireAt < r.expiresAt {
		return time.Unix(r.retireAt, 0)
	}
	return time.Unix(r.expiresAt, 0)
}

const hashPrefix = "sha256:"

// rawHash decodes "sha256:<64 hex>" to its 32 bytes; ok is false when h is not of
// that form.
func rawHash(h string) (sum [sha256.Size]byte, ok bool) {
	hexPart, ok := strings.CutPrefix(h, hashPrefix)
	if !ok || len(hexPart) != 2*sha256.Size {
		return sum, false
	}
	// Decoded in place rather than by hex.DecodeString: each opaque request looks
	// its hash up, and the lookup should not allocate.
	for i := range sum {
		hi, lo := unhex(hexPart[2*i]), unhex(hexPart[2*i+1])
		if hi < 0 || lo < 0 {
			return sum, false
		}
		sum[i] = byte(hi<<4 | lo)
	}
	return sum, true
}

// unhex is the value of the hex digit c, or -1.
func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c - 'a' + 10)
	case 'A' <= c && c <= 'F':
		return int(c - 'A' + 10)
	}
	return -1
}

// Subject is the identity of the record's APIToken, "apitoken:<namespace>:<name>", as
// the JWT sub claim carries it.
func (t *TokenSet) Subject() string { return token.Subject(t.Namespace(), t.Name) }

// Namespace is the APIToken's namespace.
func (t *TokenSet) Namespace() string { return t.meta.Value().namespace }

// Issuer is the ClusterTokenIssuer of the tokens (spec.issuerRef.name).
func (t *TokenSet) Issuer() string { return t.meta.Value().issuer }

// Creator is who created the APIToken, "" when not recorded.
func (t *TokenSet) Creator() string { return t.meta.Value().creator }

// ResourceVersion is the APIToken's metadata.resourceVersion.
func (t *TokenSet) ResourceVersion() string {
	if t.resourceVersion == 0 {
		return t.meta.Value().resourceVersion
	}
	return strconv.FormatUint(t.resourceVersion, 10)
}

// Revoked is spec.revoked, or the object is being deleted: none of its tokens is
// accepted, whatever the status still lists, because the controller may not have
// caught up yet.
func (t *TokenSet) Revoked() bool { return t.meta.Value().revoked }

// Key is the namespace/name of the APIToken.
func (t *TokenSet) Key() types.NamespacedName {
	return types.NamespacedName{Namespace: t.Namespace(), Name: t.Name}
}

// CurrentIssuedAt is when the APIToken's current token was issued; zero without one.
// A token of the APIToken issued before it and not listed was replaced and dropped
// from the status: the controller never lists a token older than the current one.
func (t *TokenSet) CurrentIssuedAt() time.Time {
	if t.issuedAt == 0 {
		return time.Time{}
	}
	return time.Unix(t.issuedAt, 0)
}

// LastUsed is status.lastUsedTime as the informer last saw it.
func (t *TokenSet) LastUsed() time.Time {
	if s := atomic.LoadInt64(&t.lastUsed); s != 0 {
		return time.Unix(s, 0)
	}
	return time.Time{}
}

// MarkUsed records that this replica queued a usage report at now and reports whether
// the previous mark is at least interval old, i.e. whether the caller should queue
// one. It is called on every accepted request, so it costs one atomic load when
// nothing needs to be done.
func (t *TokenSet) MarkUsed(now time.Time, interval time.Duration) bool {
	prev := atomic.LoadInt64(&t.marked)
	n := now.Unix()
	if prev != 0 && n-prev < int64(interval/time.Second) {
		return false
	}
	return atomic.CompareAndSwapInt64(&t.marked, prev, n)
}

// sameTokens reports whether u accepts exactly the tokens t accepts, for the same
// identity: an update that changes nothing else (lastUsedTime, conditions, renewal
// time) then leaves the index and its generation alone.
func (t *TokenSet) sameTokens(u *TokenSet) bool {
	if t.UID != u.UID || (t.meta != u.meta && !t.meta.Value().same(u.meta.Value())) || len(t.Tokens) != len(u.Tokens) {
		return false
	}
	for i := range t.Tokens {
		a, b := &t.Tokens[i], &u.Tokens[i]
		if a.TokenID != b.TokenID || (a.grant != b.grant && !a.grant.equal(b.grant)) || a.digest != b.digest ||
			a.expiresAt != b.expiresAt || a.retireAt != b.retireAt {
			return false
		}
	}
	return true
}

// NewTokenSet builds the TokenSet of an APIToken. The name, UID and token IDs are
// shared with the APIToken, which the transform then drops.
func NewTokenSet(tok *tokensv1.APIToken) *TokenSet {
	n := len(tok.Status.PreviousTokens)
	if tok.Status.Current != nil {
		n++
	}
	ts := newTokenSet(n)
	ts.Name = tok.Name
	ts.UID = tok.UID
	meta := setMeta{
		namespace: tok.Namespace,
		issuer:    tok.Spec.IssuerName(),
		creator:   tok.Annotations[tokensv1.CreatedByAnnotation],
		revoked:   tok.Spec.Revoked || tok.DeletionTimestamp != nil,
	}
	ts.resourceVersion, meta.resourceVersion = compactResourceVersion(tok.ResourceVersion)
	ts.meta = unique.Make(meta)
	if t := tok.Status.LastUsedTime; t != nil {
		ts.lastUsed = t.Unix()
	}
	if tok.Status.Current != nil {
		ts.Tokens = append(ts.Tokens, record(tok.Status.Current, ts))
		if at := tok.Status.Current.IssuedAt; !at.IsZero() {
			ts.issuedAt = at.Unix()
		}
	}
	for i := range tok.Status.PreviousTokens {
		// A previous token without retireAt is accepted until it expires: that is
		// what a gracePeriod left unset means.
		ts.Tokens = append(ts.Tokens, record(&tok.Status.PreviousTokens[i], ts))
	}
	return ts
}

// Most APITokens list one token, or two for the grace period after a rotation: their
// records then share the set's allocation.
type (
	setOf1 struct {
		set  TokenSet
		recs [1]Record
	}
	setOf2 struct {
		set  TokenSet
		recs [2]Record
	}
)

// newTokenSet returns an empty TokenSet with room for n records.
func newTokenSet(n int) *TokenSet {
	switch n {
	case 0:
		return &TokenSet{}
	case 1:
		s := &setOf1{}
		s.set.Tokens = s.recs[:0]
		return &s.set
	case 2:
		s := &setOf2{}
		s.set.Tokens = s.recs[:0]
		return &s.set
	}
	return &TokenSet{Tokens: make([]Record, 0, n)}
}

// compactResourceVersion returns rv as a number when formatting the number gives rv
// back, and else 0 and rv as written: client-go compares resource versions as
// strings, so they must read back exactly.
func compactResourceVersion(rv string) (uint64, string) {
	if n, err := strconv.ParseUint(rv, 10, 64); err == nil && n != 0 && strconv.FormatUint(n, 10) == rv {
		return n, ""
	}
	return 0, rv
}

func record(it *tokensv1.IssuedToken, owner *TokenSet) Record {
	digest := it.Digest
	if it.Format == tokensv1.FormatOpaque {
		digest = it.TokenHash
	}
	sum, hasDigest := rawHash(digest)
	r := Record{
		TokenID: it.TokenID,
		grant: shareGrant(grant{
			format:       it.Format,
			signingKeyID: unique.Make(it.SigningKeyID),
			hasDigest:    hasDigest,
			tenant:       it.Claims.Tenant,
			subTenant:    it.Claims.SubTenant,
			role:         it.Claims.Role,
			memberships:  policy.Memberships(it.Claims.Memberships),
			scopes:       it.Claims.Scopes,
			audiences:    it.Claims.Audiences,
		}),
		Owner:     owner,
		expiresAt: it.ExpiresAt.Unix(),
		digest:    sum,
	}
	if it.RetireAt != nil {
		r.retireAt = it.RetireAt.Unix()
	}
	return r
}

// The informer's store and key functions need a runtime.Object with metadata; a
// TokenSet provides the metadata through GetObjectMeta rather than embedding a
// 232-byte ObjectMeta per APIToken, since meta.Accessor is all client-go uses.

var _ k8sruntime.Object = &TokenSet{}
var _ metav1.ObjectMetaAccessor = &TokenSet{}

// GetObjectKind implements runtime.Object. A TokenSet has no kind of its own.
func (t *TokenSet) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

// DeepCopyObject implements runtime.Object. Grants are immutable and shared.
func (t *TokenSet) DeepCopyObject() k8sruntime.Object {
	c := newTokenSet(len(t.Tokens))
	c.Name, c.UID, c.meta, c.resourceVersion, c.issuedAt = t.Name, t.UID, t.meta, t.resourceVersion, t.issuedAt
	c.lastUsed, c.marked = atomic.LoadInt64(&t.lastUsed), atomic.LoadInt64(&t.marked)
	for _, r := range t.Tokens {
		r.Owner = c
		c.Tokens = append(c.Tokens, r)
	}
	return c
}

// GetObjectMeta implements metav1.ObjectMetaAccessor, which meta.Accessor uses: the
// informer's key and namespace index functions need the name, namespace and
// resourceVersion.
func (t *TokenSet) GetObjectMeta() metav1.Object {
	return &metav1.ObjectMeta{Namespace: t.Namespace(), Name: t.Name, UID: t.UID, ResourceVersion: t.ResourceVersion()}
}
