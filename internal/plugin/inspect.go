package plugin

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/jwk"
	"github.com/apitoken-operator/apitoken-operator/internal/token"
	"github.com/apitoken-operator/apitoken-operator/pkg/validatorapi"
)

type inspectOptions struct {
	*Options
	secret        string
	file          string
	issuer        string
	showToken     bool
	allNamespaces bool
	output        string
}

func newInspectCommand(o *Options) *cobra.Command {
	i := &inspectOptions{Options: o}
	cmd := &cobra.Command{
		Use:   "inspect [--secret NAME | -f FILE]",
		Short: "Decode a token and verify it against its issuer's keys",
		Long: `inspect reads a token from a Secret the operator wrote (--secret), a file (-f) or
stdin, decodes it, verifies it against the public keys its ClusterTokenIssuer
publishes, and tells whether its APIToken still lists it. It prints the claims and
the validity, never the token itself unless --show-token is given.

A JWT is verified offline (signature, expiry, issuer). An opaque token is checked
against the hash in its APIToken's status: its checksum, its secret, its expiry.`,
		Example: `  # The token the operator keeps in a Secret
  kubectl apitoken inspect --secret ci-pipeline -n acme

  # A token someone pasted
  pbpaste | kubectl apitoken inspect -A`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return i.run(cmd.Context()) },
	}
	f := cmd.Flags()
	f.StringVar(&i.secret, "secret", "", "Read the token from this Secret (key \"token\") in the namespace.")
	f.StringVarP(&i.file, "filename", "f", "", "Read the token from this file; - is stdin.")
	f.StringVar(&i.issuer, "issuer", "", "Verify with this ClusterTokenIssuer instead of the one the token's APIToken names.")
	f.BoolVar(&i.showToken, "show-token", false, "Print the token itself. It is a credential: mind where the output goes.")
	f.BoolVarP(&i.allNamespaces, "all-namespaces", "A", false, "Look for the APIToken of an opaque token in every namespace.")
	f.StringVarP(&i.output, "output", "o", "", "Output format: json or yaml.")
	return cmd
}

// Validity words inspect prints.
const (
	validityValid        = "valid"
	validityExpired      = "expired"
	validityNotYetValid  = "not yet valid"
	validityBadSignature = "bad signature"
	validityUnknownKey   = "unknown key"
	validityUnknownToken = "unknown token"
	validityBadChecksum  = "bad checksum"
	validityMalformed    = "malformed"
)

// Report is what inspect found out about a token; -o json and -o yaml print it.
type Report struct {
	// Source says where the token was read.
	Source string `json:"source"`
	// Token is the token itself, only with --show-token.
	Token string `json:"token,omitempty"`
	// Format is JWT or Opaque, or empty when the token is neither.
	Format string `json:"format,omitempty"`
	// Validity is valid, expired, not yet valid, bad signature, unknown key, unknown
	// token, bad checksum, malformed, or another refusal reason in words.
	Validity string `json:"validity"`
	// Reason is the token package's refusal reason, empty when valid.
	Reason string `json:"reason,omitempty"`
	// Detail explains the validity in a sentence.
	Detail string `json:"detail,omitempty"`
	// TokenID is the token's ID.
	TokenID string `json:"tokenID,omitempty"`
	// Issuer is the ClusterTokenIssuer the token was verified with.
	Issuer string `json:"issuer,omitempty"`
	// KeyID and Algorithm are a JWT's kid and alg headers.
	KeyID     string `json:"keyID,omitempty"`
	Algorithm string `json:"algorithm,omitempty"`
	// APIToken is namespace/name of the token's APIToken, when known.
	APIToken string `json:"apiToken,omitempty"`
	// Listed is current, previous or no: whether the APIToken's status lists the
	// token; unknown when the APIToken is not known.
	Listed string `json:"listed"`
	// RetireAt is, for a previous token, when it stops being accepted.
	RetireAt *metav1.Time `json:"retireAt,omitempty"`
	// Revoked is the APIToken's spec.revoked.
	Revoked bool `json:"revoked,omitempty"`
	// ExpiresAt is when the token expires.
	ExpiresAt *metav1.Time `json:"expiresAt,omitempty"`
	// Claims are a JWT's claims, decoded even when it is not valid.
	Claims *Claims `json:"claims,omitempty"`

	listedDetail string
}

// Claims are the claims of a JWT, as on the wire.
type Claims struct {
	Issuer    string   `json:"iss,omitempty"`
	Subject   string   `json:"sub,omitempty"`
	Audience  []string `json:"aud,omitempty"`
	ID        string   `json:"jti,omitempty"`
	Tenant    string   `json:"tenant,omitempty"`
	SubTenant string   `json:"sub_tenant,omitempty"`
	Role      string   `json:"role,omitempty"`
	// Memberships are a multi-tenant token's, as on the wire.
	Memberships []ClaimedMembership `json:"memberships,omitempty"`
	Scope       string              `json:"scope,omitempty"`
	IssuedAt    *metav1.Time        `json:"iat,omitempty"`
	NotBefore   *metav1.Time        `json:"nbf,omitempty"`
	ExpiresAt   *metav1.Time        `json:"exp,omitempty"`
}

// ClaimedMembership is one membership of the memberships claim.
type ClaimedMembership struct {
	Tenant    string `json:"tenant"`
	SubTenant string `json:"sub_tenant,omitempty"`
	Role      string `json:"role"`
}

func (i *inspectOptions) run(ctx context.Context) error {
	if err := checkOutput(i.output, outputTable, outputJSON, outputYAML); err != nil {
		return err
	}
	if i.secret != "" && i.file != "" {
		return errors.New("--secret and -f are exclusive: the token comes from one place")
	}
	c, err := i.client()
	if err != nil {
		return err
	}
	ns, err := i.namespace()
	if err != nil {
		return err
	}
	rep := &Report{Listed: "unknown"}
	tok, owner, err := i.read(ctx, c, ns, rep)
	if err != nil {
		return err
	}
	if i.showToken {
		rep.Token = tok
	}
	if token.LooksLikeJWT(tok) {
		err = i.inspectJWT(ctx, c, tok, owner, rep)
	} else {
		err = i.inspectOpaque(ctx, c, ns, tok, owner, rep)
	}
	if err != nil {
		return err
	}
	switch i.output {
	case outputJSON:
		b, err := json.MarshalIndent(rep, "", "    ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(i.Out, string(b))
		return err
	case outputYAML:
		b, err := yaml.Marshal(rep)
		if err != nil {
			return err
		}
		_, err = i.Out.Write(b)
		return err
	}
	return i.print(rep)
}

// read returns the token and, for a Secret the operator wrote, its APIToken. Errors
// never hold the token.
func (i *inspectOptions) read(ctx context.Context, c client.Client, ns string, rep *Report) (string, *tokensv1.APIToken, error) {
	var raw []byte
	var owner *tokensv1.APIToken
	switch {
	case i.secret != "":
		rep.Source = "Secret " + ns + "/" + i.secret
		sec, tok, err := secretToken(ctx, c, ns, i.secret)
		if err != nil {
			return "", nil, err
		}
		raw = tok
		if owner, err = secretOwner(ctx, c, sec); err != nil {
			return "", nil, err
		}
	case i.file != "" && i.file != "-":
		rep.Source = "file " + i.file
		var err error
		if raw, err = os.ReadFile(i.file); err != nil {
			return "", nil, err
		}
	default:
		rep.Source = "stdin"
		var err error
		if raw, err = io.ReadAll(io.LimitReader(i.In, 2*token.MaxTokenLength)); err != nil {
			return "", nil, fmt.Errorf("reading stdin: %w", err)
		}
	}
	tok := strings.TrimSpace(string(raw))
	if scheme, rest, ok := strings.Cut(tok, " "); ok && strings.EqualFold(scheme, "Bearer") {
		tok = strings.TrimSpace(rest)
	}
	if tok == "" {
		return "", nil, fmt.Errorf("no token in %s", rep.Source)
	}
	return tok, owner, nil
}

// secretToken reads the token a Secret the operator wrote holds. Errors never hold
// the token.
func secretToken(ctx context.Context, c client.Client, ns, name string) (*corev1.Secret, []byte, error) {
	sec := &corev1.Secret{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, sec); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil, fmt.Errorf("secret %q not found in namespace %q", name, ns)
		}
		return nil, nil, err
	}
	tok := sec.Data[tokensv1.SecretKeyToken]
	if len(tok) == 0 {
		return nil, nil, fmt.Errorf("secret %s/%s holds no token (key %q): revoked, or not minted yet", ns, name, tokensv1.SecretKeyToken)
	}
	return sec, tok, nil
}

// secretOwner finds the APIToken that wrote sec: its controller reference, or else
// the APIToken whose status names the Secret.
func secretOwner(ctx context.Context, c client.Client, sec *corev1.Secret) (*tokensv1.APIToken, error) {
	name := ""
	if ref := metav1.GetControllerOf(sec); ref != nil && ref.Kind == "APIToken" {
		name = ref.Name
	}
	if name == "" {
		var toks tokensv1.APITokenList
		if err := c.List(ctx, &toks, client.InNamespace(sec.Namespace)); err != nil {
			return nil, err
		}
		for i := range toks.Items {
			if secretName(&toks.Items[i]) == sec.Name {
				return &toks.Items[i], nil
			}
		}
		return nil, nil
	}
	t := &tokensv1.APIToken{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: sec.Namespace, Name: name}, t); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, err
	}
	return t, nil
}

// inspectJWT decodes tok for display, then verifies it with its issuer's keys.
func (i *inspectOptions) inspectJWT(ctx context.Context, c client.Client, tok string, owner *tokensv1.APIToken, rep *Report) error {
	rep.Format = string(tokensv1.FormatJWT)
	hdr, claims, err := decodeJWT(tok)
	if err != nil {
		rep.Validity, rep.Reason, rep.Detail = validityMalformed, string(token.ReasonMalformed), err.Error()
		return nil
	}
	rep.KeyID, rep.Algorithm, rep.Claims, rep.TokenID, rep.ExpiresAt = hdr.Kid, hdr.Alg, claims, claims.ID, claims.ExpiresAt

	if owner == nil {
		if ns, name, ok := token.ParseSubject(claims.Subject); ok {
			t := &tokensv1.APIToken{}
			switch err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, t); {
			case err == nil:
				owner = t
			case apierrors.IsNotFound(err):
				rep.APIToken = ns + "/" + name
				rep.listedDetail = "unknown: APIToken " + rep.APIToken + " not found"
			default:
				return err
			}
		}
	}
	var listed *tokensv1.IssuedToken
	if owner != nil {
		listed = rep.listed(owner, claims.ID, i.Clock.Now())
	}

	iss, err := i.findIssuer(ctx, c, owner, hdr.Kid, claims.Issuer)
	if err != nil {
		return err
	}
	if iss == nil {
		rep.Validity, rep.Reason = validityUnknownKey, string(token.ReasonUnknownKey)
		rep.Detail = "no ClusterTokenIssuer publishes the key " + orNone(hdr.Kid)
		return nil
	}
	rep.Issuer = iss.Name
	keys, err := token.NewKeySet(jwk.ToToken(iss.Status.JWKS))
	if err != nil {
		return fmt.Errorf("the keys of ClusterTokenIssuer %s are invalid: %w", iss.Name, err)
	}
	// No leeway: inspect tells the exact state, where the validator would forgive a
	// few seconds of clock skew.
	v := token.Verifier{Keys: keys, Issuer: iss.Spec.Issuer, Leeway: -1, Now: i.Clock.Now}
	_, err = v.Verify(tok)
	rep.judge(err, i.Clock.Now(), iss)
	// The status lists a JWT by its digest as well as its ID: a token re-signed from
	// it with the issuer's key and any claim changed carries the listed ID and a good
	// signature, and is not the token minted. A JWT listed before digests were
	// recorded is judged by its ID alone, as the validator judges it by its claims.
	if listed != nil && listed.Digest != "" && listed.Digest != token.Digest(tok) {
		rep.Listed, rep.RetireAt = "no", nil
		rep.listedDetail = "no: APIToken " + rep.APIToken + " lists its ID for another token, whose digest differs"
		if rep.Validity == validityValid {
			rep.Validity, rep.Reason = words(validatorapi.ReasonDigestMismatch), validatorapi.ReasonDigestMismatch
			rep.Detail = "signed by a key of ClusterTokenIssuer " + iss.Name + ", but not the token its APIToken lists under this ID: " +
				"it was re-signed with other claims, and the validator refuses it"
		}
	}
	return nil
}

// findIssuer is the issuer to verify with: --issuer, else the APIToken's, else the
// one that publishes kid, else the one whose URL is iss.
func (i *inspectOptions) findIssuer(ctx context.Context, c client.Client, owner *tokensv1.APIToken, kid, iss string) (*tokensv1.ClusterTokenIssuer, error) {
	name := i.issuer
	if name == "" && owner != nil {
		name = owner.Spec.IssuerName()
	}
	if name != "" {
		cti := &tokensv1.ClusterTokenIssuer{}
		if err := c.Get(ctx, client.ObjectKey{Name: name}, cti); err != nil {
			if apierrors.IsNotFound(err) {
				return nil, fmt.Errorf("no ClusterTokenIssuer named %q", name)
			}
			return nil, err
		}
		return cti, nil
	}
	var all tokensv1.ClusterTokenIssuerList
	if err := c.List(ctx, &all); err != nil {
		return nil, err
	}
	for j := range all.Items {
		if jwks := all.Items[j].Status.JWKS; jwks != nil {
			for _, k := range jwks.Keys {
				if k.Kid == kid {
					return &all.Items[j], nil
				}
			}
		}
	}
	for j := range all.Items {
		if all.Items[j].Spec.Issuer == iss {
			return &all.Items[j], nil
		}
	}
	return nil, nil
}

// judge turns the verifier's answer into the validity.
func (r *Report) judge(err error, now time.Time, iss *tokensv1.ClusterTokenIssuer) {
	reason := token.ReasonOf(err)
	r.Reason = string(reason)
	switch reason {
	case "":
		r.Validity = validityValid
		r.Detail = "signed by a key of ClusterTokenIssuer " + iss.Name
	case token.ReasonExpired:
		r.Validity = validityExpired
		r.Detail = "the signature is good, but the token expired"
		if r.ExpiresAt != nil {
			r.Detail += " " + duration.HumanDuration(now.Sub(r.ExpiresAt.Time)) + " ago"
		}
	case token.ReasonNotYetValid:
		r.Validity = validityNotYetValid
		r.Detail = "the signature is good, but the token's nbf is in the future"
	case token.ReasonBadSignature:
		r.Validity = validityBadSignature
		r.Detail = "the signature does not verify with the key it names: the token was altered or forged"
	case token.ReasonUnknownKey:
		r.Validity = validityUnknownKey
		r.Detail = "ClusterTokenIssuer " + iss.Name + " does not publish the key " + orNone(r.KeyID)
	default:
		r.Validity = words(string(reason))
		r.Detail = strings.TrimPrefix(err.Error(), "token: ")
	}
}

// listed records whether t's status lists the token ID id, and returns the entry
// that lists it, or nil.
func (r *Report) listed(t *tokensv1.APIToken, id string, now time.Time) *tokensv1.IssuedToken {
	r.APIToken = t.Namespace + "/" + t.Name
	r.Revoked = t.Spec.Revoked
	if cur := t.Status.Current; cur != nil && cur.TokenID == id {
		r.Listed, r.listedDetail = "current", "yes, as the current token"
		return cur
	}
	for j := range t.Status.PreviousTokens {
		p := &t.Status.PreviousTokens[j]
		if p.TokenID != id {
			continue
		}
		r.Listed, r.RetireAt = "previous", p.RetireAt
		switch {
		case p.RetireAt == nil:
			r.listedDetail = "yes, as a previous token, accepted until it expires"
		case p.RetireAt.After(now):
			r.listedDetail = "yes, as a previous token, retires " + relative(now, p.RetireAt.Time)
		default:
			r.listedDetail = "yes, as a previous token, retired " + relative(now, p.RetireAt.Time)
		}
		return p
	}
	r.Listed, r.listedDetail = "no", "no: replaced and retired, or revoked"
	return nil
}

// inspectOpaque checks an opaque token's structure, finds its APIToken by ID and
// checks its secret against the hash the status holds.
func (i *inspectOptions) inspectOpaque(ctx context.Context, c client.Client, ns, tok string, owner *tokensv1.APIToken, rep *Report) error {
	_, id, err := token.ParseOpaque(tok)
	if err != nil {
		switch token.ReasonOf(err) {
		case token.ReasonBadChecksum:
			rep.Format = string(tokensv1.FormatOpaque)
			rep.Validity, rep.Detail = validityBadChecksum, "the checksum does not match: the token is mistyped or truncated"
		default:
			rep.Validity, rep.Detail = validityMalformed, "neither a JWT nor an opaque token"
		}
		rep.Reason = string(token.ReasonOf(err))
		return nil
	}
	rep.Format, rep.TokenID = string(tokensv1.FormatOpaque), id
	if owner == nil {
		if owner, err = i.findByTokenID(ctx, c, ns, id); err != nil {
			return err
		}
	}
	if owner == nil {
		rep.Validity, rep.Reason = validityUnknownToken, string(token.ReasonUnknownToken)
		where := "namespace " + ns
		if i.allNamespaces {
			where = "any namespace"
		}
		rep.Detail = "no APIToken in " + where + " lists the token ID"
		rep.listedDetail = "unknown: no APIToken found (-A looks in every namespace)"
		return nil
	}
	now := i.Clock.Now()
	rep.listed(owner, id, now)
	rep.Issuer = owner.Spec.IssuerName()
	var it *tokensv1.IssuedToken
	if cur := owner.Status.Current; cur != nil && cur.TokenID == id {
		it = cur
	}
	for j := range owner.Status.PreviousTokens {
		if owner.Status.PreviousTokens[j].TokenID == id {
			it = &owner.Status.PreviousTokens[j]
		}
	}
	if it == nil {
		rep.Validity, rep.Reason = validityUnknownToken, string(token.ReasonUnknownToken)
		rep.Detail = "APIToken " + rep.APIToken + " does not list the token ID, so its secret cannot be checked"
		return nil
	}
	exp := it.ExpiresAt
	rep.ExpiresAt = &exp
	if _, err := token.VerifyOpaque(tok, it.TokenHash); err != nil {
		rep.Validity, rep.Reason = validityUnknownToken, string(token.ReasonOf(err))
		rep.Detail = "the secret does not match the hash in the status: the ID is right, the rest is not"
		return nil
	}
	if !now.Before(exp.Time) {
		rep.Validity, rep.Reason = validityExpired, string(token.ReasonExpired)
		rep.Detail = "the secret matches, but the token expired " + duration.HumanDuration(now.Sub(exp.Time)) + " ago"
		return nil
	}
	rep.Validity, rep.Detail = validityValid, "the secret matches the hash in the status of APIToken "+rep.APIToken
	return nil
}

// findByTokenID returns the APIToken whose status lists id, in ns or, with -A, any
// namespace.
func (i *inspectOptions) findByTokenID(ctx context.Context, c client.Client, ns, id string) (*tokensv1.APIToken, error) {
	var opts []client.ListOption
	if !i.allNamespaces {
		opts = append(opts, client.InNamespace(ns))
	}
	var toks tokensv1.APITokenList
	if err := c.List(ctx, &toks, opts...); err != nil {
		return nil, err
	}
	for j := range toks.Items {
		t := &toks.Items[j]
		if t.Status.Current != nil && t.Status.Current.TokenID == id {
			return t, nil
		}
		for _, p := range t.Status.PreviousTokens {
			if p.TokenID == id {
				return t, nil
			}
		}
	}
	return nil, nil
}

func (i *inspectOptions) print(rep *Report) error {
	now := i.Clock.Now()
	d := &describer{w: i.Out}
	d.line(0, "Source", rep.Source)
	if rep.Token != "" {
		d.line(0, "Token", rep.Token)
	} else {
		d.line(0, "Token", "<hidden: --show-token prints it>")
	}
	d.line(0, "Format", orNone(rep.Format))
	d.line(0, "Validity", rep.Validity)
	if rep.Detail != "" {
		d.line(0, "Detail", rep.Detail)
	}
	d.line(0, "Token ID", orNone(rep.TokenID))
	if rep.ExpiresAt != nil {
		d.line(0, "Expires", timestamp(now, rep.ExpiresAt))
	}
	d.line(0, "APIToken", orNone(rep.APIToken))
	listed := rep.listedDetail
	if listed == "" {
		listed = "unknown: the token names no APIToken"
	}
	// Whether the signature verified: the claims are the issuer's.
	trusted := rep.Validity == validityValid || rep.Validity == validityExpired || rep.Validity == validityNotYetValid ||
		rep.Reason == validatorapi.ReasonDigestMismatch
	if !trusted && rep.Format == string(tokensv1.FormatJWT) && rep.APIToken != "" {
		// The ID and subject come from claims nobody vouched for.
		listed += " (going by its unverified claims)"
	}
	d.line(0, "Listed", listed)
	if rep.APIToken != "" && rep.Listed != "unknown" {
		d.line(0, "Revoked", map[bool]string{true: "yes: every token of the APIToken is refused", false: "no"}[rep.Revoked])
	}
	d.line(0, "Issuer", orNone(rep.Issuer))
	if rep.Format == string(tokensv1.FormatJWT) && rep.Algorithm != "" {
		d.line(0, "Key", orNone(rep.KeyID)+" ("+rep.Algorithm+")")
	}
	d.flush()
	if cl := rep.Claims; cl != nil {
		if trusted {
			fmt.Fprintln(i.Out, "Claims:")
		} else {
			fmt.Fprintln(i.Out, "Claims (unverified: the signature was not checked or did not verify):")
		}
		for _, kv := range [][2]string{
			{"iss", cl.Issuer}, {"sub", cl.Subject}, {"aud", strings.Join(cl.Audience, ",")}, {"jti", cl.ID},
			{"tenant", cl.Tenant}, {"sub_tenant", cl.SubTenant}, {"role", cl.Role}, {"memberships", claimedList(cl.Memberships)}, {"scope", cl.Scope},
			{"iat", timestamp(now, cl.IssuedAt)}, {"nbf", timestamp(now, cl.NotBefore)}, {"exp", timestamp(now, cl.ExpiresAt)},
		} {
			if kv[1] != "" && kv[1] != none {
				d.line(1, kv[0], kv[1])
			}
		}
		d.flush()
	}
	return nil
}

// jwtHeader is what inspect shows of a JWT's header.
type jwtHeader struct {
	Alg string `json:"alg"`
	Kid string `json:"kid"`
}

// decodeJWT decodes a JWT's header and claims WITHOUT verifying them, for display
// only. Errors say what is wrong without quoting the token.
func decodeJWT(tok string) (*jwtHeader, *Claims, error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return nil, nil, errors.New("a JWT has three segments")
	}
	var h jwtHeader
	if err := decodeSegment(parts[0], &h); err != nil {
		return nil, nil, fmt.Errorf("the header %w", err)
	}
	var w struct {
		Issuer      string              `json:"iss"`
		Subject     string              `json:"sub"`
		Audience    json.RawMessage     `json:"aud"`
		ID          string              `json:"jti"`
		Tenant      string              `json:"tenant"`
		SubTenant   string              `json:"sub_tenant"`
		Role        string              `json:"role"`
		Memberships []ClaimedMembership `json:"memberships"`
		Scope       string              `json:"scope"`
		IssuedAt    *json.Number        `json:"iat"`
		NotBefore   *json.Number        `json:"nbf"`
		ExpiresAt   *json.Number        `json:"exp"`
	}
	if err := decodeSegment(parts[1], &w); err != nil {
		return nil, nil, fmt.Errorf("the claims %w", err)
	}
	c := &Claims{Issuer: w.Issuer, Subject: w.Subject, ID: w.ID, Tenant: w.Tenant, SubTenant: w.SubTenant, Role: w.Role,
		Memberships: w.Memberships, Scope: w.Scope,
		IssuedAt: numericDate(w.IssuedAt), NotBefore: numericDate(w.NotBefore), ExpiresAt: numericDate(w.ExpiresAt)}
	if len(w.Audience) > 0 {
		var one string
		if json.Unmarshal(w.Audience, &one) == nil {
			c.Audience = []string{one}
		} else {
			_ = json.Unmarshal(w.Audience, &c.Audience)
		}
	}
	return &h, c, nil
}

// claimedList writes memberships as the validator's headers do; "" for none.
func claimedList(ms []ClaimedMembership) string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = validatorapi.Membership{Tenant: m.Tenant, SubTenant: m.SubTenant, Role: m.Role}.String()
	}
	return strings.Join(out, ",")
}

func decodeSegment(seg string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return errors.New("is not base64url")
	}
	if err := json.Unmarshal(b, v); err != nil {
		return errors.New("is not a JSON object of the expected shape")
	}
	return nil
}

func numericDate(n *json.Number) *metav1.Time {
	if n == nil {
		return nil
	}
	f, err := n.Float64()
	if err != nil {
		return nil
	}
	t := metav1.NewTime(time.Unix(int64(f), 0).UTC())
	return &t
}

var camel = regexp.MustCompile(`([a-z])([A-Z])`)

// words turns a CamelCase reason into lower-case words: AlgMismatch → alg mismatch.
func words(s string) string {
	return strings.ToLower(camel.ReplaceAllString(s, "$1 $2"))
}
