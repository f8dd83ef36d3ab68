package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/testenv"
)

const costsNamespace = "costs"

// requestCost is what one kind of request costs kube-apiserver and etcd, on average.
type requestCost struct {
	Request string  `json:"request"`
	APIMs   float64 `json:"apiserverCPUMs"`
	EtcdMs  float64 `json:"etcdCPUMs"`
	WallMs  float64 `json:"wallMsPerRequest"`
}

// costsPhase measures, once the manager and the validator are stopped and the
// webhook configuration is gone, what each kind of request the operator's work is made
// of costs, one kind after the other, n of each at the run's concurrency: the floor
// under the ratios of the mint and the rotation, whose requests are of these kinds.
func (e *env) costsPhase(ctx context.Context, n int) ([]requestCost, error) {
	logf("Costs: %d requests of each kind the operator's work is made of", n)
	c := e.client
	if err := c.DeleteAllOf(ctx, &admissionv1.ValidatingWebhookConfiguration{}); err != nil {
		return nil, err
	}
	if err := c.DeleteAllOf(ctx, &admissionv1.MutatingWebhookConfiguration{}); err != nil {
		return nil, err
	}
	if err := c.Create(ctx, testenv.Namespace(costsNamespace)); err != nil {
		return nil, err
	}
	var out []requestCost
	measure := func(name string, fn func(i int) error) error {
		api, etcd := e.procs["kube-apiserver"], e.procs["etcd"]
		a0, _ := cpuSeconds(api)
		e0, _ := cpuSeconds(etcd)
		start := time.Now()
		if err := e.parallel(n, fn); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		wall := time.Since(start)
		a1, _ := cpuSeconds(api)
		e1, _ := cpuSeconds(etcd)
		out = append(out, requestCost{Request: name, APIMs: (a1 - a0) * 1000 / float64(n), EtcdMs: (e1 - e0) * 1000 / float64(n), WallMs: float64(wall.Milliseconds()) / float64(n)})
		return nil
	}
	name := func(i int) string { return fmt.Sprintf("c-%06d", i) }
	secrets := make([]*corev1.Secret, n)
	toks := make([]*tokensv1.APIToken, n)
	status := func(i int, id string) client.Patch {
		return client.RawPatch(types.MergePatchType, []byte(fmt.Sprintf(`{"status":{"current":{"tokenID":"%s","format":"JWT","signingKeyID":"abcdefabcdefabcdefabcdefabcdefabcdefabcdefa","claims":{"tenant":"%s","role":"viewer","audiences":["acme-apis"]},"issuedAt":"2030-01-01T00:00:00Z","expiresAt":"2030-01-31T00:00:00Z"},"conditions":[%s],"observedGeneration":1,"secretName":"%s","renewalTime":"2030-01-20T00:00:00Z","rotations":%d}}`,
			id, costsNamespace,
			condition("Ready", "True", "Minted", "Secret "+name(i)+" holds token "+id+", valid until 2030-01-31T00:00:00Z"),
			name(i), len(id)%7)))
	}
	steps := []struct {
		name string
		fn   func(i int) error
	}{
		{"POST secrets", func(i int) error {
			secrets[i] = boundSecret(i)
			secrets[i].Namespace, secrets[i].Name = costsNamespace, name(i)
			return c.Create(ctx, secrets[i])
		}},
		{"PUT secrets", func(i int) error {
			secrets[i].Data[tokensv1.SecretKeyTokenID] = []byte("updated")
			return c.Update(ctx, secrets[i])
		}},
		{"APPLY secrets", func(i int) error {
			ac := corev1ac.Secret(name(i), costsNamespace).WithData(map[string][]byte{tokensv1.SecretKeyToken: []byte(strings.Repeat("y", 560))})
			return c.Apply(ctx, ac, client.FieldOwner("costs"), client.ForceOwnership)
		}},
		{"POST events", func(i int) error {
			return c.Create(ctx, &eventsv1.Event{
				ObjectMeta:          metav1.ObjectMeta{Namespace: costsNamespace, Name: name(i)},
				EventTime:           metav1.NowMicro(),
				ReportingController: "costs", ReportingInstance: "costs", Action: "Mint", Reason: "Minted", Type: corev1.EventTypeNormal,
				Regarding: corev1.ObjectReference{Kind: "APIToken", Namespace: costsNamespace, Name: name(i)},
				Note:      "Wrote token 01JD3ZQ7M8X4VNK2H5R9T6W0AB to Secret " + name(i) + ": no token was minted yet",
			})
		}},
		{"POST apitokens (no webhook)", func(i int) error {
			toks[i] = benchToken(costsNamespace, name(i), time.Hour)
			return c.Create(ctx, toks[i])
		}},
		{"PATCH apitokens/status (first token)", func(i int) error {
			return c.Status().Patch(ctx, toks[i], status(i, "01JD3ZQ7M8X4VNK2H5R9T6W0AB"))
		}},
		{"PATCH apitokens (rotate annotation)", func(i int) error {
			return c.Patch(ctx, toks[i], client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"annotations":{"`+tokensv1.RotateAnnotation+`":"costs"}}}`)))
		}},
		{"PATCH apitokens/status (rotation)", func(i int) error {
			return c.Status().Patch(ctx, toks[i], status(i, "01JD3ZQ7M8X4VNK2H5R9T6W0AC"))
		}},
	}
	for _, s := range steps {
		if err := measure(s.name, s.fn); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func condition(typ, status, reason, msg string) string {
	return fmt.Sprintf(`{"type":"%s","status":"%s","reason":"%s","message":"%s","lastTransitionTime":"2030-01-01T00:00:00Z","observedGeneration":1}`, typ, status, reason, msg)
}
