package controller

import (
	"bytes"
	"compress/flate"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"unique"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
)

// Packed is how the manager's cache keeps an APIToken or a token Secret, one of each
// per token: its metadata as the API server sent it (less managed fields), which is
// all the informer's keys and indexes, the controllers' predicates and their event
// handlers read, and the rest (spec and status, or type and data) as JSON
// compressed against a dictionary of the kind's common text. A typed APIToken costs
// the cache about 1.8 kB, most of it the struct fields and strings of its spec and
// status; packed, they take about a hundred bytes (TestCacheBytesPerToken).
//
// DeepCopyObject unpacks: it returns the typed object, as the API server sent it.
// That is what makes the packing invisible to readers: controller-runtime's cache
// reader deep-copies every object it hands out (Get and List), so a read through the
// manager's client returns a typed object, decoded for that read. The one thing a
// reader must not do is list with client.UnsafeDisableDeepCopy, which would hand
// out the packed objects themselves (the list then fails with a type mismatch).
type Packed struct {
	metav1.ObjectMeta
	packing *packing
	body    []byte
	// issuer is, for an APIToken, the ClusterTokenIssuer its spec names (defaulted),
	// kept beside the body for the cache's issuer index: the index function runs on
	// every add and twice on every update, and unpacking for it cost 15 µs and 5.8 kB
	// a call against 25 ns for reading this (BenchmarkIndexIssuerOf). The handle is
	// one pointer, shared by every APIToken that names the same issuer.
	issuer unique.Handle[string]
}

var _ client.Object = &Packed{}

// GetObjectKind implements runtime.Object: the kind of the packed object, fixed.
func (p *Packed) GetObjectKind() schema.ObjectKind { return p.packing }

// DeepCopyObject implements runtime.Object by unpacking p. It panics on a body
// that does not decode, which only a bug in pack can cause: the body is this
// process's own encoding of an object it decoded.
func (p *Packed) DeepCopyObject() runtime.Object {
	obj, err := p.packing.unpack(p)
	if err != nil {
		panic(fmt.Sprintf("unpacking cached %s %s/%s: %v", p.packing.gvk.Kind, p.Namespace, p.Name, err))
	}
	return obj
}

// Unpack returns the typed object o stands for: o itself unless it is Packed.
func Unpack(o client.Object) (client.Object, error) {
	p, ok := o.(*Packed)
	if !ok {
		return o, nil
	}
	obj, err := p.packing.unpack(p)
	if err != nil {
		return nil, err
	}
	return obj.(client.Object), nil
}

// packing is how one kind is packed: which part of the object the body holds, and
// the dictionary it is compressed against.
type packing struct {
	gvk schema.GroupVersionKind
	// dict is text the kind's bodies have in common, for the compressor to refer to.
	dict []byte
	// split returns an object's metadata and the struct whose JSON is its body
	// (pointers into the object's fields); ok is false for an object of another kind.
	split   func(obj runtime.Object) (meta *metav1.ObjectMeta, body any, ok bool)
	newObj  func() runtime.Object
	writers sync.Pool // *flate.Writer
	readers sync.Pool // io.ReadCloser that is a flate.Resetter
}

// SetGroupVersionKind implements schema.ObjectKind. A packed object's kind is its
// packing's; setting it changes nothing.
func (k *packing) SetGroupVersionKind(schema.GroupVersionKind) {}

// GroupVersionKind implements schema.ObjectKind.
func (k *packing) GroupVersionKind() schema.GroupVersionKind { return k.gvk }

// apiTokenBody is the packed part of an APIToken.
type apiTokenBody struct {
	Spec   *tokensv1.APITokenSpec   `json:"spec"`
	Status *tokensv1.APITokenStatus `json:"status"`
}

// secretBody is the packed part of a Secret.
type secretBody struct {
	Immutable *bool             `json:"immutable,omitempty"`
	Data      map[string][]byte `json:"data,omitempty"`
	Type      corev1.SecretType `json:"type,omitempty"`
}

var (
	apiTokenPacking = &packing{
		gvk: schema.GroupVersionKind{Group: tokensv1.GroupVersion.Group, Version: tokensv1.GroupVersion.Version, Kind: "APIToken"},
		split: func(obj runtime.Object) (*metav1.ObjectMeta, any, bool) {
			t, ok := obj.(*tokensv1.APIToken)
			if !ok {
				return nil, nil, false
			}
			return &t.ObjectMeta, &apiTokenBody{Spec: &t.Spec, Status: &t.Status}, true
		},
		newObj: func() runtime.Object { return &tokensv1.APIToken{} },
		// The Revoked=False and Expired=False conditions are no longer written, but
		// APITokens written by earlier versions keep them until their next rotation
		// (keepLegacyFalse in the APIToken controller), weeks after an upgrade.
		dict: []byte(`{"spec":{"issuerRef":{"name":"default"},"tenant":"","role":"viewer","format":"JWT","lifetime":"720h0m0s",` +
			`"scopes":[],"audiences":[],"rotation":{"policy":"Auto","renewBefore":"240h0m0s","gracePeriod":"1h0m0s"},` +
			`"secret":{"name":"","deletionPolicy":"Delete"}},"status":{"conditions":[` +
			`{"type":"Ready","status":"True","observedGeneration":1,"lastTransitionTime":"2026-01-01T00:00:00Z","reason":"Minted","message":"Secret  holds token , valid until 2026-01-01T00:00:00Z"},` +
			`{"type":"Revoked","status":"False","observedGeneration":1,"lastTransitionTime":"2026-01-01T00:00:00Z","reason":"NotRevoked","message":"The tokens of this APIToken are not revoked"},` +
			`{"type":"Expired","status":"False","observedGeneration":1,"lastTransitionTime":"2026-01-01T00:00:00Z","reason":"NotExpired","message":"The current token has not expired"}],` +
			`"observedGeneration":1,"current":{"tokenID":"","format":"JWT","signingKeyID":"","digest":"sha256:","claims":{"tenant":"","role":"viewer","audiences":[]},` +
			`"issuedAt":"2026-01-01T00:00:00Z","expiresAt":"2026-01-01T00:00:00Z"},"renewalTime":"2026-01-01T00:00:00Z",` +
			`"previousTokens":[{"tokenID":"","format":"Opaque","tokenHash":"sha256:","retireAt":"2026-01-01T00:00:00Z"}],"rotations":1,"secretName":"","lastUsedTime":"2026-01-01T00:00:00Z"}}`),
	}
	secretPacking = &packing{
		gvk: schema.GroupVersionKind{Version: "v1", Kind: "Secret"},
		split: func(obj runtime.Object) (*metav1.ObjectMeta, any, bool) {
			s, ok := obj.(*corev1.Secret)
			if !ok {
				return nil, nil, false
			}
			return &s.ObjectMeta, &secretBody{Immutable: s.Immutable, Data: s.Data, Type: s.Type}, true
		},
		newObj: func() runtime.Object { return &corev1.Secret{} },
		dict: []byte(`{"data":{"` + cachedJWTKey + `":"","expiresAt":"MjAyNi0wMS0wMVQwMDowMDowMFo=","memberships":"","role":"dmlld2Vy","tenant":"","token":"","tokenID":""},` +
			`"type":"` + tokensv1.TokenSecretType + `"}`),
	}
)

// pack returns obj packed, or obj itself if it is not of the packing's kind (or
// already packed: client-go may hand a transform an object it transformed).
func (k *packing) pack(obj runtime.Object) (runtime.Object, error) {
	meta, body, ok := k.split(obj)
	if !ok {
		return obj, nil
	}
	raw, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	w, _ := k.writers.Get().(*flate.Writer)
	var buf bytes.Buffer
	if w == nil {
		// The level cannot be wrong; a writer with a dictionary allocates its
		// window once, and the pool keeps it.
		w, _ = flate.NewWriterDict(&buf, flate.DefaultCompression, k.dict)
	} else {
		w.Reset(&buf)
	}
	_, err = w.Write(raw)
	if err == nil {
		err = w.Close()
	}
	k.writers.Put(w)
	if err != nil {
		return nil, err
	}
	p := &Packed{ObjectMeta: *meta, packing: k, body: bytes.Clone(buf.Bytes())}
	if t, ok := obj.(*tokensv1.APIToken); ok {
		p.issuer = unique.Make(t.Spec.IssuerName())
	}
	return p, nil
}

// unpack decodes p into a new typed object.
func (k *packing) unpack(p *Packed) (runtime.Object, error) {
	obj := k.newObj()
	meta, body, _ := k.split(obj)
	p.DeepCopyInto(meta) // the metadata, ObjectMeta's
	src := bytes.NewReader(p.body)
	r, _ := k.readers.Get().(io.ReadCloser)
	if r == nil {
		r = flate.NewReaderDict(src, k.dict)
	} else if err := r.(flate.Resetter).Reset(src, k.dict); err != nil {
		return nil, err
	}
	raw, err := io.ReadAll(r)
	k.readers.Put(r)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(raw, body); err != nil {
		return nil, err
	}
	if s, ok := obj.(*corev1.Secret); ok {
		b := body.(*secretBody)
		s.Immutable, s.Data, s.Type = b.Immutable, b.Data, b.Type
	}
	return obj, nil
}
