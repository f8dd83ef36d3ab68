package index

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"slices"
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
// A TokenSet is immutable once built, except for the two usage timestamps, which are
// read and written atomically.
type TokenSet struct {
	Namespace       string
	Name            string
	UID             types.UID
	ResourceVersion string
	// Issuer is the ClusterTokenIssuer of the tokens (spec.issuerRef.name).
	Issuer string
	// creator is who created the APIToken (the apitoken.dev/created-by annotation
	// the admission webhook sets). Interned: a cluster's APITokens have few creators,
	// and each name would otherwise cost every APIToken its own copy.
	creator unique.Handle[string]
	// Revoked is spec.revoked, or the object is being deleted: none of its tokens is
	// accepted, whatever the status still lists, because the controller may not have
	// caught up yet.
	Revoked bool
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

// Record is one issued token: enough to recognise it and to say whom it identifies.
// Times are Unix seconds and the digests are raw bytes, since an index of many
// thousand tokens pays for every byte of a record (see TestMemoryPerToken).
type Record struct {
	TokenID string
	Format  tokensv1.TokenFormat
	// digest is the raw SHA-256 the presented token must match: for opaque tokens of
	// the secret part (status tokenHash), for JWTs of the whole token (status
	// digest). Empty when the status holds none, as for JWTs minted before digests
	// were recorded.
	digest string
	// SigningKeyID is, for JWTs, the kid of the key that signed it.
	SigningKeyID string
	Tenant       string
	SubTenant    string
	Role         string
	// Memberships are a multi-tenant token's; Tenant, SubTenant and Role are then
	// empty. Nil for a single-tenant token.
	Memberships []validatorapi.Membership
	Scopes      []string
	Audiences   []string
	expiresAt   int64
	// retireAt is when a previous token stops being accepted; 0 for the current one.
	retireAt int64
	// Owner is the TokenSet that holds the record.
	Owner *TokenSet
}

// Hash is, for opaque tokens, "sha256:<hex>" of the secret part, the form
// token.VerifyOpaque compares with; "" for JWTs or an unreadable status hash.
func (r *Record) Hash() string {
	if r.Format != tokensv1.FormatOpaque || r.digest == "" {
		return ""
	}
	return hashPrefix + hex.EncodeToString([]byte(r.digest))
}

// HasDigest reports whether the record binds its JWT by digest.
func (r *Record) HasDigest() bool { return r.Format == tokensv1.FormatJWT && r.digest != "" }

// MatchesDigest reports whether sum (token.DigestSum of a presented JWT) is the
// digest the record binds, in constant time. The digest is not secret; the constant
// time costs nothing and leaves no question.
func (r *Record) MatchesDigest(sum [sha256.Size]byte) bool {
	return r.HasDigest() && subtle.ConstantTimeCompare(sum[:], []byte(r.digest)) == 1
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

// rawHash decodes "sha256:<64 hex>" to its 32 bytes, or "" when h is not of that form.
func rawHash(h string) string {
	hexPart, ok := strings.CutPrefix(h, hashPrefix)
	if !ok || len(hexPart) != 2*sha256.Size {
		return ""
	}
	b, err := hex.DecodeString(hexPart)
	if err != nil {
		return ""
	}
	return string(b)
}

// Subject is the identity of the record's APIToken, "apitoken:<namespace>:<name>", as
// the JWT sub claim carries it.
func (t *TokenSet) Subject() string { return token.Subject(t.Namespace, t.Name) }

// Creator is who created the APIToken, "" when not recorded.
func (t *TokenSet) Creator() string { return t.creator.Value() }

// Key is the namespace/name of the APIToken.
func (t *TokenSet) Key() types.NamespacedName {
	return types.NamespacedName{Namespace: t.Namespace, Name: t.Name}
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
	if t.UID != u.UID || t.Issuer != u.Issuer || t.creator != u.creator || t.Revoked != u.Revoked || len(t.Tokens) != len(u.Tokens) {
		return false
	}
	for i := range t.Tokens {
		a, b := &t.Tokens[i], &u.Tokens[i]
		if a.TokenID != b.TokenID || a.Format != b.Format || a.digest != b.digest || a.SigningKeyID != b.SigningKeyID ||
			a.Tenant != b.Tenant || a.SubTenant != b.SubTenant || a.Role != b.Role || !slices.Equal(a.Memberships, b.Memberships) ||
			!slices.Equal(a.Scopes, b.Scopes) || !slices.Equal(a.Audiences, b.Audiences) ||
			a.expiresAt != b.expiresAt || a.retireAt != b.retireAt {
			return false
		}
	}
	return true
}

// NewTokenSet builds the TokenSet of an APIToken. Strings are shared with the
// APIToken, which the transform then drops.
func NewTokenSet(tok *tokensv1.APIToken) *TokenSet {
	n := len(tok.Status.PreviousTokens)
	if tok.Status.Current != nil {
		n++
	}
	ts := &TokenSet{
		Namespace:       tok.Namespace,
		Name:            tok.Name,
		UID:             tok.UID,
		ResourceVersion: tok.ResourceVersion,
		Issuer:          tok.Spec.IssuerName(),
		creator:         unique.Make(tok.Annotations[tokensv1.CreatedByAnnotation]),
		Revoked:         tok.Spec.Revoked || tok.DeletionTimestamp != nil,
		Tokens:          make([]Record, 0, n),
	}
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
		r := record(&tok.Status.PreviousTokens[i], ts)
		// A previous token without retireAt is accepted until it expires: that is
		// what a gracePeriod left unset means.
		ts.Tokens = append(ts.Tokens, r)
	}
	return ts
}

func record(it *tokensv1.IssuedToken, owner *TokenSet) Record {
	digest := it.Digest
	if it.Format == tokensv1.FormatOpaque {
		digest = it.TokenHash
	}
	r := Record{
		TokenID:      it.TokenID,
		Format:       internFormat(it.Format),
		digest:       rawHash(digest),
		SigningKeyID: it.SigningKeyID,
		Tenant:       it.Claims.Tenant,
		SubTenant:    it.Claims.SubTenant,
		Role:         it.Claims.Role,
		Memberships:  policy.Memberships(it.Claims.Memberships),
		Scopes:       nilIfEmpty(it.Claims.Scopes),
		Audiences:    nilIfEmpty(it.Claims.Audiences),
		expiresAt:    it.ExpiresAt.Unix(),
		Owner:        owner,
	}
	if it.RetireAt != nil {
		r.retireAt = it.RetireAt.Unix()
	}
	return r
}

// internFormat returns the package constant for the known formats, so that records do
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

func nilIfEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}

// The informer's store and key functions need a runtime.Object with metadata; a
// TokenSet provides the metadata through GetObjectMeta rather than embedding a
// 232-byte ObjectMeta per APIToken, since meta.Accessor is all client-go uses.

var _ k8sruntime.Object = &TokenSet{}
var _ metav1.ObjectMetaAccessor = &TokenSet{}

// GetObjectKind implements runtime.Object. A TokenSet has no kind of its own.
func (t *TokenSet) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

// DeepCopyObject implements runtime.Object. Records are immutable and shared.
func (t *TokenSet) DeepCopyObject() k8sruntime.Object {
	c := &TokenSet{
		Namespace: t.Namespace, Name: t.Name, UID: t.UID, ResourceVersion: t.ResourceVersion,
		Issuer: t.Issuer, creator: t.creator, Revoked: t.Revoked,
		lastUsed: atomic.LoadInt64(&t.lastUsed), marked: atomic.LoadInt64(&t.marked),
	}
	c.Tokens = make([]Record, len(t.Tokens))
	for i, r := range t.Tokens {
		r.Owner = c
		c.Tokens[i] = r
	}
	return c
}

// GetObjectMeta implements metav1.ObjectMetaAccessor, which meta.Accessor uses: the
// informer's key and namespace index functions need the name, namespace and
// resourceVersion.
func (t *TokenSet) GetObjectMeta() metav1.Object {
	return &metav1.ObjectMeta{Namespace: t.Namespace, Name: t.Name, UID: t.UID, ResourceVersion: t.ResourceVersion}
}
