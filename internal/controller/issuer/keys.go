package issuer

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/controller"
	"github.com/apitoken-operator/apitoken-operator/internal/jwk"
	"github.com/apitoken-operator/apitoken-operator/internal/keystore"
	"github.com/apitoken-operator/apitoken-operator/internal/logging"
	"github.com/apitoken-operator/apitoken-operator/internal/token"
)

// loadKeys reads the key Secret and sorts its entries: the private keys of the keys
// the status lists (held), the listed keys still needed whose entry is missing or
// corrupt (lost), and intact keys the status does not list (orphans). It sets no
// condition.
func (r *Reconciler) loadKeys(ctx context.Context, s *scope) (ctrl.Result, error) {
	secret := &corev1.Secret{}
	err := r.reader().Get(withoutBodyDumps(ctx), client.ObjectKey{Namespace: r.Namespace, Name: keystore.SecretName(s.issuer.Name)}, secret)
	switch {
	case apierrors.IsNotFound(err):
		secret = nil
	case err != nil:
		return ctrl.Result{}, fmt.Errorf("reading the key Secret of issuer %s: %w", s.issuer.Name, err)
	}
	s.secret = secret
	var data map[string][]byte
	if secret != nil {
		data = secret.Data
	}

	s.held = map[string]*token.SigningKey{}
	s.pem = map[string][]byte{}
	listed := map[string]bool{}
	for _, k := range s.issuer.Status.Keys {
		listed[k.KeyID] = true
		key, ok := keystore.Parse(data, k.KeyID, k.Algorithm)
		if !ok {
			// An expired key was pruned from the Secret by a pass that then failed to
			// write the status: it is gone as planned, not lost.
			if k.ExpiresAt == nil || k.ExpiresAt.After(s.now) {
				s.lost = append(s.lost, k.KeyID)
			}
			continue
		}
		s.held[k.KeyID] = key
		s.pem[k.KeyID] = data[keystore.DataKey(k.KeyID)]
	}

	// An orphan carries no algorithm; its key type tells, trying the spec's first.
	algs := []tokensv1.SigningAlgorithm{s.algorithm, tokensv1.AlgorithmES256, tokensv1.AlgorithmEdDSA, tokensv1.AlgorithmRS256}
	for _, dataKey := range slices.Sorted(maps.Keys(data)) {
		kid, ok := keystore.KeyID(dataKey)
		if !ok || listed[kid] {
			continue
		}
		for _, alg := range algs {
			if key, ok := keystore.Parse(data, kid, alg); ok {
				s.orphans = append(s.orphans, key)
				s.pem[kid] = data[dataKey]
				break
			}
		}
	}
	return ctrl.Result{}, nil
}

// planKeys decides the key set of this pass, in memory (planKeySet): it withdraws
// every key for a compromised rotation and drops the lost keys, replaces a current
// key that is gone at once, publishes a next key when a key policy asks for one
// (adopting an orphan of the right algorithm before generating a key, unless the
// keys are compromised), lets the next key sign once it has been published
// publishBefore, retiring the current one until now plus maxLifetime, and prunes the
// retired keys whose time is up. It sets no condition: nothing is published before
// the Secret holds the keys.
func (r *Reconciler) planKeys(ctx context.Context, s *scope) (ctrl.Result, error) {
	st := &s.issuer.Status
	plan, err := planKeySet(keyInput{
		now:             s.now,
		algorithm:       s.algorithm,
		interval:        s.interval,
		maxLifetime:     s.maxLifetime,
		publishBefore:   s.publishBefore,
		keys:            st.Keys,
		currentKeyID:    st.CurrentKeyID,
		nextKeyID:       st.NextKeyID,
		lost:            s.lost,
		rotateRequested: s.rotateRequest != "",
		compromised:     s.compromised,
	}, func() (string, error) {
		key, err := s.nextKey()
		if err != nil {
			return "", err
		}
		s.held[key.ID] = key
		return key.ID, nil
	})
	if err != nil {
		return ctrl.Result{}, err
	}
	s.plan = plan
	for _, id := range slices.Concat(plan.pruned, plan.withdrawn) {
		delete(s.held, id)
	}
	if s.compromised {
		// Withdrawn, not lost: reportLostKeys has nothing to say about them.
		s.lost = nil
	}

	// Key changes are the audit record of what the manager did: never sampled.
	log := logging.Audit(ctrl.LoggerFrom(ctx))
	if len(plan.withdrawn) > 0 {
		log.Info("Withdrew compromised signing keys", "keyIDs", plan.withdrawn)
	}
	switch {
	case plan.generated != "" && plan.next == nil:
		log.Info("Made a new current signing key", "keyID", plan.current.KeyID, "algorithm", s.algorithm,
			"reason", string(plan.generated), "adopted", s.adopted, "previousKeyID", plan.previous)
	case plan.generated != "":
		log.Info("Published the next signing key", "keyID", plan.next.KeyID, "algorithm", s.algorithm,
			"reason", string(plan.generated), "adopted", s.adopted, "signsAt", s.nextRotation())
	case plan.activated != "":
		log.Info("The next signing key signs new tokens", "keyID", plan.current.KeyID, "reason", string(plan.activated), "previousKeyID", plan.previous)
	}
	if len(plan.pruned) > 0 {
		log.Info("Pruned signing keys no token needs", "keyIDs", plan.pruned)
	}
	return ctrl.Result{}, nil
}

// nextKey returns a new key: an orphan of the spec's algorithm, which a pass wrote to
// the Secret but crashed before publishing, or else a freshly generated key.
// Unadopted orphans were never published, so no token can need them: they are left
// out of the Secret. A compromised rotation adopts nothing: an orphan of the leaked
// Secret leaked with it.
func (s *scope) nextKey() (*token.SigningKey, error) {
	for _, o := range s.orphans {
		if o.Algorithm == token.Algorithm(s.algorithm) && !s.compromised {
			s.adopted = true
			return o, nil
		}
	}
	key, err := token.GenerateKey(token.Algorithm(s.algorithm))
	if err != nil {
		return nil, fmt.Errorf("generating a signing key for issuer %s: %w", s.issuer.Name, err)
	}
	pem, err := key.MarshalPrivateKey()
	if err != nil {
		return nil, fmt.Errorf("encoding the signing key of issuer %s: %w", s.issuer.Name, err)
	}
	s.pem[key.ID] = pem
	return key, nil
}

// writeSecret makes the key Secret hold exactly the private keys of the planned key
// set, before publish lists them. It writes nothing when the Secret already does. It
// sets no condition.
func (r *Reconciler) writeSecret(ctx context.Context, s *scope) (ctrl.Result, error) {
	want := make(map[string][]byte, len(s.held))
	for id := range s.held {
		want[keystore.DataKey(id)] = s.pem[id]
	}
	if r.secretUpToDate(s, want) {
		return ctrl.Result{}, nil
	}

	name := keystore.SecretName(s.issuer.Name)
	ac := corev1ac.Secret(name, r.Namespace).
		WithType(tokensv1.SigningKeySecretType).
		WithLabels(map[string]string{
			tokensv1.ManagedByLabel: tokensv1.ManagedByValue,
			keystore.IssuerLabel:    keystore.IssuerLabelValue(s.issuer.Name),
		}).
		// A namespaced object may be owned by a cluster-scoped one: the Secret is
		// garbage-collected with the issuer.
		WithOwnerReferences(controller.OwnerReference(s.issuer, "ClusterTokenIssuer")).
		WithData(want)
	if err := r.Client.Apply(withoutBodyDumps(ctx), ac, client.FieldOwner(controller.FieldManager), client.ForceOwnership); err != nil {
		return ctrl.Result{}, fmt.Errorf("writing the key Secret %s/%s: %w", r.Namespace, name, err)
	}

	// Apply removes only the entries this field manager wrote. An entry changed by
	// another writer (a hand edit that corrupted a key) is theirs and survives: remove
	// it explicitly, so the Secret holds nothing but the published keys.
	stale := map[string]any{}
	for dataKey := range ac.Data {
		if _, isKey := keystore.KeyID(dataKey); isKey && want[dataKey] == nil {
			stale[dataKey] = nil
		}
	}
	if len(stale) > 0 {
		patch, err := json.Marshal(map[string]any{"data": stale})
		if err != nil {
			return ctrl.Result{}, err
		}
		secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: r.Namespace, Name: name}}
		if err := r.Client.Patch(withoutBodyDumps(ctx), secret, client.RawPatch(types.MergePatchType, patch), client.FieldOwner(controller.FieldManager)); err != nil {
			return ctrl.Result{}, fmt.Errorf("removing stale entries of the key Secret %s/%s: %w", r.Namespace, name, err)
		}
	}
	return ctrl.Result{}, nil
}

// secretUpToDate reports whether the Secret read at the start of the pass already
// holds exactly want, with the labels and owner reference the controller sets.
func (r *Reconciler) secretUpToDate(s *scope, want map[string][]byte) bool {
	sec := s.secret
	if sec == nil || sec.Type != tokensv1.SigningKeySecretType ||
		sec.Labels[tokensv1.ManagedByLabel] != tokensv1.ManagedByValue ||
		sec.Labels[keystore.IssuerLabel] != keystore.IssuerLabelValue(s.issuer.Name) {
		return false
	}
	if !slices.ContainsFunc(sec.OwnerReferences, func(ref metav1.OwnerReference) bool {
		return ref.UID == s.issuer.UID && ref.Controller != nil && *ref.Controller
	}) {
		return false
	}
	n := 0
	for dataKey, v := range sec.Data {
		if _, isKey := keystore.KeyID(dataKey); !isKey {
			continue
		}
		n++
		if w, ok := want[dataKey]; !ok || !bytes.Equal(w, v) {
			return false
		}
	}
	return n == len(want)
}

// publish records the planned key set in the status: keys (current, next, retired),
// JWKS (public keys only), current and next key, next rotation, Secret name and the
// rotate-key request served. It sets Ready=True (reason KeyGenerated or KeyRotated
// when this pass made the current key sign, KeyPublished when it published the next
// one, else the reason it had, or Active), KeysLost=True (reason KeysLost) when keys
// were lost, and KeysLost=False (reason KeysIntact) at the first rotation after a
// loss, and emits the matching events. It requeues for the next key's publication or
// signing, the next expiry of a retired key, or the next count of a re-minting,
// whichever comes first.
func (r *Reconciler) publish(ctx context.Context, s *scope) (ctrl.Result, error) {
	st := &s.issuer.Status
	plan := &s.plan
	st.Keys = []tokensv1.SigningKeyStatus{plan.current}
	st.NextKeyID = ""
	if plan.next != nil {
		st.Keys = append(st.Keys, *plan.next)
		st.NextKeyID = plan.next.KeyID
	}
	st.Keys = append(st.Keys, plan.retired...)
	st.JWKS = &tokensv1.JSONWebKeySet{Keys: make([]tokensv1.JSONWebKey, 0, len(st.Keys))}
	for _, k := range st.Keys {
		st.JWKS.Keys = append(st.JWKS.Keys, jwk.FromToken(s.held[k.KeyID].PublicJWK()))
	}
	st.CurrentKeyID = plan.current.KeyID
	next := s.nextRotation()
	st.NextRotationTime = &metav1.Time{Time: next}
	st.KeySecretName = keystore.SecretName(s.issuer.Name)
	if s.rotateRequest != "" {
		st.LastRotateKeyRequest = s.rotateRequest
	}
	keysPublished.WithLabelValues(s.issuer.Name).Set(float64(len(st.Keys)))

	r.reportLostKeys(ctx, s)
	r.reportNewKey(s)
	st.ObservedGeneration = s.issuer.Generation

	// The next pass with work: the next key's publication or signing, or an expiry.
	wake := next
	if plan.next == nil {
		wake = next.Add(-s.publishBefore)
	}
	for _, k := range plan.retired {
		if k.ExpiresAt.Time.Before(wake) {
			wake = k.ExpiresAt.Time
		}
	}
	after := max(wake.Sub(s.now), time.Second)
	if s.remaining > 0 {
		after = min(after, remintPoll)
	}
	return ctrl.Result{RequeueAfter: after}, nil
}

// nextRotation is when the current key stops signing: when the next key has been
// published publishBefore, or keyRotationInterval after the current key began.
func (s *scope) nextRotation() time.Time {
	if n := s.plan.next; n != nil {
		return n.CreatedAt.Add(s.publishBefore)
	}
	return activatedAt(&s.plan.current).Add(s.interval)
}

// reportLostKeys sets KeysLost and emits a warning when keys were lost in this pass;
// the condition clears at the first rotation after the loss, when every key that
// signs is one made since. Key IDs are public, so the message names them.
func (r *Reconciler) reportLostKeys(ctx context.Context, s *scope) {
	if len(s.lost) == 0 {
		if s.plan.activated == reasonNextKeyDue && meta.IsStatusConditionTrue(s.issuer.Status.Conditions, tokensv1.ConditionKeysLost) {
			s.setCondition(tokensv1.ConditionKeysLost, metav1.ConditionFalse, tokensv1.ReasonKeysIntact,
				fmt.Sprintf("The signing key rotated to %s after the loss; every key in the Secret is intact.", s.plan.current.KeyID))
		}
		return
	}
	ids := strings.Join(s.lost, ", ")
	msg := fmt.Sprintf("The private keys %s are missing or corrupt in Secret %s/%s: they were dropped from the JWKS, "+
		"so tokens they signed no longer verify and are re-minted.", ids, r.Namespace, keystore.SecretName(s.issuer.Name))
	s.setCondition(tokensv1.ConditionKeysLost, metav1.ConditionTrue, tokensv1.ReasonKeysLost, msg)
	r.Recorder.Eventf(s.issuer, nil, corev1.EventTypeWarning, tokensv1.ReasonKeysLost, "DropLostKeys", "%s", msg)
	keysLost.WithLabelValues(s.issuer.Name).Add(float64(len(s.lost)))
	logging.Audit(ctrl.LoggerFrom(ctx)).Info("Signing keys lost", "keyIDs", s.lost, "secret", keystore.SecretName(s.issuer.Name))
}

// reportNewKey sets Ready and emits an event when this pass made a key sign or
// published the next one.
func (r *Reconciler) reportNewKey(s *scope) {
	plan := &s.plan
	published := plan.generated != "" && plan.next != nil
	reason := tokensv1.ReasonActive
	switch {
	case plan.activated == reasonNextKeyDue || plan.activated == reasonCompromised:
		reason = tokensv1.ReasonKeyRotated
	case plan.activated != "":
		reason = tokensv1.ReasonKeyGenerated
	case published:
		reason = tokensv1.ReasonKeyPublished
	default:
		// A pass that changed nothing keeps saying what last happened, so that it
		// writes nothing.
		if c := meta.FindStatusCondition(s.issuer.Status.Conditions, tokensv1.ConditionReady); c != nil && c.Status == metav1.ConditionTrue &&
			(c.Reason == tokensv1.ReasonKeyGenerated || c.Reason == tokensv1.ReasonKeyRotated || c.Reason == tokensv1.ReasonKeyPublished) {
			reason = c.Reason
		}
	}
	at := s.nextRotation().UTC().Format(time.RFC3339)
	msg := fmt.Sprintf("Signing key %s (%s) signs new tokens; next rotation at %s.", plan.current.KeyID, plan.current.Algorithm, at)
	if n := plan.next; n != nil {
		msg = fmt.Sprintf("Signing key %s (%s) signs new tokens; key %s (%s) is published and replaces it at %s.",
			plan.current.KeyID, plan.current.Algorithm, n.KeyID, n.Algorithm, at)
	}
	s.setCondition(tokensv1.ConditionReady, metav1.ConditionTrue, reason, msg)

	if plan.generated != "" {
		keysGenerated.WithLabelValues(s.issuer.Name, string(plan.generated)).Inc()
	}
	switch {
	case plan.activated != "":
		action := "GenerateKey"
		if reason == tokensv1.ReasonKeyRotated {
			action = "RotateKey"
		}
		r.Recorder.Eventf(s.issuer, nil, corev1.EventTypeNormal, reason, action, "%s", msg)
	case published:
		r.Recorder.Eventf(s.issuer, nil, corev1.EventTypeNormal, reason, "PublishKey", "%s", msg)
	}
}
