package validator

import (
	"crypto/sha256"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"k8s.io/utils/lru"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/policy"
	"github.com/apitoken-operator/apitoken-operator/internal/token"
	"github.com/apitoken-operator/apitoken-operator/internal/validator/index"
	"github.com/apitoken-operator/apitoken-operator/pkg/validatorapi"
)

// Identity is who an accepted token identifies: its APIToken and what the token grants.
// It is immutable and shared between requests through the decision cache.
type Identity struct {
	TokenID   string
	Format    tokensv1.TokenFormat
	Namespace string
	Name      string
	UID       types.UID
	// Subject is "apitoken:<namespace>:<name>".
	Subject string
	Issuer  string
	// Tenant, SubTenant and Role are a single-tenant token's; empty for a token of
	// several tenants, whose Memberships the requirement selects from instead.
	Tenant      string
	SubTenant   string
	Role        string
	Memberships []validatorapi.Membership
	Scopes      []string
	Audiences   []string
	ExpiresAt   time.Time
	// Creator is who created the APIToken, as the admission webhook recorded it; ""
	// for an APIToken created before the operator recorded creators.
	Creator string
	// ParentTokenID is, for a token issued by token exchange, the ID of the listed
	// token it descends from; TokenID is then the exchanged token's own ID.
	ParentTokenID string
	// Depth is the number of exchanges between the token and its listed parent.
	Depth int

	rec *index.Record
	iss *index.Issuer
	// header is the identity as /authorize answers it, built once per verified
	// token since the decision cache answers from the same Identity many times. For a
	// token of several tenants it names no tenant; memberHeaders holds, by tenant,
	// the answer for each membership a requirement can select.
	header        http.Header
	memberHeaders map[string]http.Header
}

// ListedTokenID is the ID of the token's record: its own, or its listed parent's.
func (id *Identity) ListedTokenID() string { return id.rec.TokenID }

// Grant is what the token grants, the bound of any token exchanged from it.
func (id *Identity) Grant() policy.Grant {
	g := ParentGrant(id.rec)
	if id.ParentTokenID == "" {
		return g
	}
	g.Tenant, g.SubTenant, g.Role, g.Scopes, g.Audiences, g.Depth = id.Tenant, id.SubTenant, id.Role, id.Scopes, id.Audiences, id.Depth
	g.Memberships = nil // an exchanged token is of one tenant
	if id.ExpiresAt.Before(g.NotAfter) {
		g.NotAfter = id.ExpiresAt
	}
	return g
}

// Roles returns the token's role and every role it includes; for a token of several
// tenants, which holds no role of its own, none.
func (id *Identity) Roles() []string { return id.RolesOf(id.Role) }

// RolesOf returns role and every role it includes, by the token's issuer's role graph.
func (id *Identity) RolesOf(role string) []string {
	if role == "" {
		return []string{}
	}
	return id.iss.Expand(role)
}

// Grants reports whether the token passes a check that requires role.
func (id *Identity) Grants(role string) bool { return id.iss.Grants(id.Role, role) }

// Header is the identity /authorize answers with when the requirement selected
// membership (nil for a single-tenant token, or when none was selected). Shared and
// read-only.
func (id *Identity) Header(membership *validatorapi.Membership) http.Header {
	if membership != nil {
		if h, ok := id.memberHeaders[membership.Tenant]; ok {
			return h
		}
	}
	return id.header
}

// Refusal says why a token was not accepted. Reason is a stable CamelCase word (a
// token.Reason or one of the validator's); Description is a fixed sentence safe to
// send to the client.
type Refusal struct {
	Reason      string
	Description string
	// TokenID is the ID of the refused token when there is one to log: a verified
	// JWT's jti, or the ID written in a well-formed opaque token (which anyone can
	// write: it names the token being tried, not a proven owner). Never a secret.
	TokenID string
}

func refuse(reason, tokenID string) *Refusal {
	return &Refusal{Reason: reason, Description: validatorapi.Describe(reason), TokenID: tokenID}
}

func refuseErr(err error, tokenID string) *Refusal {
	return refuse(string(token.ReasonOf(err)), tokenID)
}

// Authenticator decides whether a token is one the index accepts right now.
type Authenticator struct {
	idx   *index.Index
	clock clock.PassiveClock
	// audiences, when set, are the audiences a token must carry one of.
	audiences []string
	// cache maps a JWT's digest (token.DigestSum) to a *cached, so that a token seen
	// again costs a hash and a map lookup instead of a signature check. nil disables
	// it.
	cache *lru.Cache
	// live reads the APIToken of a signed JWT the index does not know; nil: refuse.
	live *LiveLookup
}

// cached is an accepted JWT. It is never modified: a refresh replaces it.
type cached struct {
	gen      uint64
	id       *Identity
	notAfter time.Time
}

// NewAuthenticator returns an Authenticator over idx. cacheSize bounds the decision
// cache; 0 disables it.
func NewAuthenticator(idx *index.Index, clk clock.PassiveClock, audiences []string, cacheSize int) *Authenticator {
	a := &Authenticator{idx: idx, clock: clk, audiences: audiences}
	if cacheSize > 0 {
		a.cache = lru.New(cacheSize)
	}
	return a
}

// Authenticate returns the identity of tok, or why it is refused.
func (a *Authenticator) Authenticate(tok string) (*Identity, *Refusal) {
	if tok == "" {
		return nil, refuse(validatorapi.ReasonMissing, "")
	}
	if len(tok) > token.MaxTokenLength {
		return nil, refuse(string(token.ReasonTooLarge), "")
	}
	if token.LooksLikeJWT(tok) {
		return a.jwt(tok)
	}
	return a.opaque(tok)
}

// jwt checks the decision cache, then verifies. The generation is read before any
// lookup, so a change that lands during verification leaves the entry stale rather
// than wrongly fresh.
func (a *Authenticator) jwt(tok string) (*Identity, *Refusal) {
	now := a.clock.Now()
	gen := a.idx.Generation()
	var key [sha256.Size]byte
	if a.cache != nil {
		key = token.DigestSum(tok)
		if v, ok := a.cache.Get(key); ok {
			c := v.(*cached)
			if now.Before(c.notAfter) {
				if c.gen == gen {
					return c.id, nil
				}
				// The index changed, most likely for another token: the entry is
				// still right if the token's record and issuer are the same objects.
				if a.idx.Token(c.id.rec.TokenID) == c.id.rec && a.idx.Issuer(c.id.Issuer) == c.id.iss {
					a.cache.Add(key, &cached{gen: gen, id: c.id, notAfter: c.notAfter})
					return c.id, nil
				}
			}
			a.cache.Remove(key)
		}
	}

	// One pass over the token: the index's key set finds the key by kid across all
	// issuers, and the issuer owning that key must be the one the token names.
	claims, err := a.idx.Verifier().Verify(tok)
	if err != nil {
		return nil, refuseErr(err, "")
	}
	issuer := a.idx.IssuerForKey(claims.KeyID, claims.Issuer)
	if issuer == nil {
		// The key left the index between the two lookups.
		return nil, refuse(string(token.ReasonUnknownKey), "")
	}
	if claims.Issuer != issuer.URL {
		return nil, refuse(string(token.ReasonWrongIssuer), "")
	}
	if claims.Parent != "" {
		id, notAfter, live, r := a.exchanged(claims, issuer, now)
		if r != nil {
			return nil, r
		}
		a.remember(key, gen, id, notAfter, live, now)
		return id, nil
	}
	rec, live, r := a.record(claims.ID, claims)
	if r != nil {
		return nil, r
	}
	if r := a.check(rec, issuer, now); r != nil {
		return nil, r
	}
	// The record binds the exact token minted for it: one re-signed from it with the
	// real key but any claim changed, aud included, is another token. A record
	// written before digests were recorded is bound by the claims below alone.
	if rec.HasDigest() {
		if a.cache == nil {
			key = token.DigestSum(tok)
		}
		if !rec.MatchesDigest(key) {
			return nil, refuse(validatorapi.ReasonDigestMismatch, claims.ID)
		}
	}
	// The record is the controller's account of what it minted: a signed token that
	// says something else was not minted by the controller for this APIToken.
	if rec.Format() != tokensv1.FormatJWT || rec.Owner.Issuer() != issuer.Name ||
		(rec.SigningKeyID() != "" && rec.SigningKeyID() != claims.KeyID) ||
		!isSubject(claims.Subject, rec.Owner) || claims.Tenant != rec.Tenant() ||
		claims.SubTenant != rec.SubTenant() || claims.Role != rec.Role() ||
		!sameMemberships(claims.Memberships, rec.Memberships()) {
		return nil, refuse(validatorapi.ReasonClaimsMismatch, claims.ID)
	}
	id := newIdentity(rec, issuer, claims.Audience)
	notAfter := rec.NotAfter()
	if claims.ExpiresAt.Before(notAfter) {
		notAfter = claims.ExpiresAt
	}
	a.remember(key, gen, id, notAfter, live, now)
	return id, nil
}

// sameMemberships reports whether a JWT's memberships are its record's, in the same
// order: the controller mints them in the order it records them.
func sameMemberships(claims []token.Membership, rec []validatorapi.Membership) bool {
	if len(claims) != len(rec) {
		return false
	}
	for i, c := range claims {
		if r := &rec[i]; c.Tenant != r.Tenant || c.SubTenant != r.SubTenant || c.Role != r.Role {
			return false
		}
	}
	return true
}

// record finds the record of token ID tokenID (a validly signed JWT's own, or its
// listed parent's): in the index, or else, since the informer may be behind, in the
// APIToken the claims' subject names. live reports the second; without a record, the
// refusal says why.
func (a *Authenticator) record(tokenID string, claims *token.Claims) (rec *index.Record, live bool, r *Refusal) {
	if rec = a.idx.Token(tokenID); rec != nil {
		return rec, false, nil
	}
	reason := string(token.ReasonUnknownToken)
	if a.live != nil {
		if rec, reason = a.live.Find(a.idx, tokenID, claims); rec != nil {
			return rec, true, nil
		}
	}
	return nil, false, refuse(reason, claims.ID)
}

// remember caches an accepted JWT until notAfter. A record read past the index is not
// cached: the index will have it, or the next request reads again.
func (a *Authenticator) remember(key [sha256.Size]byte, gen uint64, id *Identity, notAfter time.Time, live bool, now time.Time) {
	if a.cache != nil && !live && now.Before(notAfter) {
		a.cache.Add(key, &cached{gen: gen, id: id, notAfter: notAfter})
	}
}

// exchanged decides a token the exchange service issued. Nothing is stored per
// exchange: the token is accepted only while its listed parent would be, and only as
// far as the issuer's exchange policy, as it is now, lets it narrow that parent. So
// revoking, retiring or deleting the parent refuses every token exchanged from it,
// with the parent's reason, at the same moment as the parent itself.
func (a *Authenticator) exchanged(claims *token.Claims, issuer *index.Issuer, now time.Time) (*Identity, time.Time, bool, *Refusal) {
	rec, live, r := a.record(claims.Parent, claims)
	if r != nil {
		return nil, time.Time{}, false, r
	}
	if r := a.check(rec, issuer, now); r != nil {
		r.TokenID = claims.ID
		return nil, time.Time{}, false, r
	}
	if rec.Owner.Issuer() != issuer.Name || !isSubject(claims.Subject, rec.Owner) {
		return nil, time.Time{}, false, refuse(validatorapi.ReasonClaimsMismatch, claims.ID)
	}
	if issuer.Policy == nil {
		return nil, time.Time{}, false, refuse(validatorapi.ReasonPolicy, claims.ID)
	}
	child := policy.Grant{Tenant: claims.Tenant, SubTenant: claims.SubTenant, Role: claims.Role, Scopes: claims.Scopes,
		Audiences: claims.Audience, NotAfter: claims.ExpiresAt, Depth: claims.Depth}
	if len(claims.Memberships) > 0 {
		// The exchange issues tokens of one tenant only.
		return nil, time.Time{}, false, refuse(validatorapi.ReasonClaimsMismatch, claims.ID)
	}
	if err := issuer.Policy.CheckExchanged(ParentGrant(rec), child); err != nil {
		// A policy tightened since is the issuer's decision; any other widening means
		// the exchange service did not issue these claims.
		reason := validatorapi.ReasonClaimsMismatch
		if v := (*policy.Violation)(nil); errors.As(err, &v) && (v.Rule == policy.RuleExchangeDisabled || v.Rule == policy.RuleExchangeDepth) {
			reason = validatorapi.ReasonPolicy
		}
		return nil, time.Time{}, false, refuse(reason, claims.ID)
	}
	id := newIdentity(rec, issuer, claims.Audience)
	id.TokenID, id.ParentTokenID = claims.ID, rec.TokenID
	id.Tenant, id.SubTenant, id.Role, id.Scopes = claims.Tenant, claims.SubTenant, claims.Role, claims.Scopes
	id.Memberships, id.memberHeaders = nil, nil
	id.ExpiresAt, id.Depth = claims.ExpiresAt, claims.Depth
	id.buildHeader()
	notAfter := rec.NotAfter()
	if claims.ExpiresAt.Before(notAfter) {
		notAfter = claims.ExpiresAt
	}
	return id, notAfter, live, nil
}

// ParentGrant is what a listed token grants, the bound of every token exchanged from it.
func ParentGrant(rec *index.Record) policy.Grant {
	return policy.Grant{Tenant: rec.Tenant(), SubTenant: rec.SubTenant(), Role: rec.Role(), Memberships: rec.Memberships(),
		Scopes: rec.Scopes(), Audiences: rec.Audiences(), NotAfter: rec.NotAfter()}
}

// opaque looks the token up by its ID and compares its secret's hash in constant time.
// Opaque tokens skip the decision cache: checking one costs a SHA-256 of 43 bytes,
// less than hashing the token for a cache key would.
func (a *Authenticator) opaque(tok string) (*Identity, *Refusal) {
	_, id, err := token.ParseOpaque(tok)
	if err != nil {
		return nil, refuseErr(err, "")
	}
	rec := a.idx.Token(id)
	if rec == nil || rec.Format() != tokensv1.FormatOpaque {
		return nil, refuse(string(token.ReasonUnknownToken), id)
	}
	hash := rec.Hash()
	if _, err := token.VerifyOpaque(tok, hash); err != nil {
		return nil, refuseErr(err, id)
	}
	// The hash index must agree: a hash held by another record means two records
	// share a secret, which only a copied status can cause.
	if a.idx.ByHash(hash) != rec {
		return nil, refuse(validatorapi.ReasonConflict, id)
	}
	issuer := a.idx.Issuer(rec.Owner.Issuer())
	if issuer == nil {
		return nil, refuse(validatorapi.ReasonUnknownIssuer, id)
	}
	if r := a.check(rec, issuer, a.clock.Now()); r != nil {
		return nil, r
	}
	if !matchesAudiences(a.audiences, rec.Audiences()) {
		return nil, refuse(string(token.ReasonWrongAudience), id)
	}
	return newIdentity(rec, issuer, rec.Audiences()), nil
}

// check applies the validator's own rules to a record, by the validator's clock:
// revocation, expiry and retirement, and the issuer's policy as it is now, which may
// have been tightened since the token was minted.
func (a *Authenticator) check(rec *index.Record, iss *index.Issuer, now time.Time) *Refusal {
	switch {
	case rec.Owner.Revoked():
		return refuse(validatorapi.ReasonRevoked, rec.TokenID)
	case !now.Before(rec.ExpiresAt()):
		return refuse(string(token.ReasonExpired), rec.TokenID)
	case !rec.RetireAt().IsZero() && !now.Before(rec.RetireAt()):
		return refuse(validatorapi.ReasonRetired, rec.TokenID)
	case iss.Allows(rec.Owner.Namespace(), rec) != nil:
		return refuse(validatorapi.ReasonPolicy, rec.TokenID)
	}
	return nil
}

// isSubject reports whether sub is the subject of ts's APIToken, without building
// that string on every verification.
func isSubject(sub string, ts *index.TokenSet) bool {
	ns, name, ok := token.ParseSubject(sub)
	return ok && ns == ts.Namespace() && name == ts.Name
}

func newIdentity(rec *index.Record, iss *index.Issuer, audiences []string) *Identity {
	o := rec.Owner
	id := &Identity{
		TokenID:     rec.TokenID,
		Format:      rec.Format(),
		Namespace:   o.Namespace(),
		Name:        o.Name,
		UID:         o.UID,
		Subject:     o.Subject(),
		Issuer:      iss.Name,
		Tenant:      rec.Tenant(),
		SubTenant:   rec.SubTenant(),
		Role:        rec.Role(),
		Memberships: rec.Memberships(),
		Scopes:      rec.Scopes(),
		Audiences:   audiences,
		ExpiresAt:   rec.ExpiresAt(),
		Creator:     o.Creator(),
		rec:         rec,
		iss:         iss,
	}
	id.buildHeader()
	return id
}

// buildHeader sets the identity headers /authorize answers with: one set for a token
// of one tenant; for a token of several, one without a tenant and one per membership.
func (id *Identity) buildHeader() {
	if len(id.Memberships) == 0 {
		id.header = id.headerOf(id.Tenant, id.SubTenant, id.Role)
		return
	}
	all := make([]string, len(id.Memberships))
	for i, m := range id.Memberships {
		all[i] = m.String()
	}
	list := []string{strings.Join(all, ",")}
	id.header = id.headerOf("", "", "")
	id.header[validatorapi.HeaderTokenMemberships] = list
	id.memberHeaders = make(map[string]http.Header, len(id.Memberships))
	for _, m := range id.Memberships {
		h := id.headerOf(m.Tenant, m.SubTenant, m.Role)
		h[validatorapi.HeaderTokenMemberships] = list
		id.memberHeaders[m.Tenant] = h
	}
}

// headerOf is the identity header for a token acting for tenant, subTenant and role;
// none of them is written when empty.
func (id *Identity) headerOf(tenant, subTenant, role string) http.Header {
	h := http.Header{
		validatorapi.HeaderTokenID:      {id.TokenID},
		validatorapi.HeaderTokenSubject: {id.Subject},
	}
	if tenant != "" {
		h[validatorapi.HeaderTokenTenant] = []string{tenant}
	}
	if role != "" {
		h[validatorapi.HeaderTokenRole] = []string{role}
	}
	if subTenant != "" {
		h[validatorapi.HeaderTokenSubTenant] = []string{subTenant}
	}
	if len(id.Scopes) > 0 {
		h[validatorapi.HeaderTokenScopes] = []string{strings.Join(id.Scopes, " ")}
	}
	if id.ParentTokenID != "" {
		h[validatorapi.HeaderTokenParentID] = []string{id.ParentTokenID}
	}
	return h
}

// matchesAudiences reports whether have holds one of want; an empty want accepts all.
func matchesAudiences(want, have []string) bool {
	if len(want) == 0 {
		return true
	}
	return slices.ContainsFunc(have, func(a string) bool { return slices.Contains(want, a) })
}

// intersect returns the members of a that are in b, in a's order.
func intersect(a, b []string) []string {
	var out []string
	for _, s := range a {
		if slices.Contains(b, s) && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// opaquePrefix is the prefix of the issuer of the opaque token with ID id, for
// reassembling a token sent as an ID and a secret; "" when the index knows neither.
func (a *Authenticator) opaquePrefix(id string) string {
	if rec := a.idx.Token(id); rec != nil {
		if iss := a.idx.Issuer(rec.Owner.Issuer()); iss != nil {
			return iss.OpaquePrefix
		}
	}
	return ""
}
