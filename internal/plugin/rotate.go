package plugin

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
)

type rotateOptions struct {
	*Options
	retirePrevious bool
	wait           bool
	timeout        time.Duration
}

func newRotateCommand(o *Options) *cobra.Command {
	r := &rotateOptions{Options: o}
	cmd := &cobra.Command{
		Use:   "rotate NAME",
		Short: "Ask the operator to replace an APIToken's token now",
		Long: `rotate sets the apitoken.dev/rotate annotation to the current time, which makes
the operator mint a new token at once. The previous token stays valid for the
APIToken's grace period, so pods have time to pick up the new one, unless
--retire-previous is given: then every previous token stops working at once,
the answer to a leaked token.`,
		Example: `  # Rotate now; the old token keeps working for the grace period
  kubectl apitoken rotate ci-pipeline -n acme

  # A token leaked: rotate and refuse the old one immediately, and wait for it
  kubectl apitoken rotate ci-pipeline -n acme --retire-previous --wait`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return r.run(cmd.Context(), args[0]) },
	}
	cmd.Flags().BoolVar(&r.retirePrevious, "retire-previous", false, "Retire every previous token at once instead of after its grace period.")
	cmd.Flags().BoolVar(&r.wait, "wait", false, "Wait until the operator has served the request.")
	cmd.Flags().DurationVar(&r.timeout, "timeout", time.Minute, "How long --wait waits.")
	return cmd
}

func (r *rotateOptions) run(ctx context.Context, name string) error {
	c, ns, t, err := r.loadToken(ctx, name)
	if err != nil {
		return err
	}
	if t.Spec.Revoked {
		return fmt.Errorf("APIToken %s/%s is revoked: set spec.revoked to false to mint a new token", ns, name)
	}
	value, err := r.requestValue(t.Annotations[tokensv1.RotateAnnotation], t.Status.LastRotateRequest)
	if err != nil {
		return err
	}
	if err := patchRequest(ctx, c, t, tokensv1.RotateAnnotation, value, tokensv1.RetirePreviousAnnotation, r.retirePrevious); err != nil {
		return err
	}
	msg := "rotation requested"
	if r.retirePrevious {
		msg += ", previous tokens retired at once"
	}
	fmt.Fprintf(r.Out, "apitoken/%s %s (%s=%s)\n", name, msg, tokensv1.RotateAnnotation, value)
	if !r.wait {
		return nil
	}
	return r.waitServed(ctx, c, t, value)
}

// waitServed waits until the controller recorded value as served and the token it
// minted is Ready.
func (r *rotateOptions) waitServed(ctx context.Context, c client.Client, t *tokensv1.APIToken, value string) error {
	var got *tokensv1.APIToken
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, r.timeout, true, func(ctx context.Context) (bool, error) {
		cur := &tokensv1.APIToken{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(t), cur); err != nil {
			return false, err
		}
		got = cur
		ready, _ := conditionStatus(cur.Status.Conditions, tokensv1.ConditionReady)
		return cur.Status.LastRotateRequest == value && cur.Status.ObservedGeneration == cur.Generation && ready == "True", nil
	})
	if err != nil {
		return fmt.Errorf("waiting for the rotation of %s/%s: %w", t.Namespace, t.Name, err)
	}
	id := none
	if got.Status.Current != nil {
		id = got.Status.Current.TokenID
	}
	fmt.Fprintf(r.Out, "apitoken/%s rotated: current token %s\n", t.Name, id)
	return nil
}

// requestValue is the value of a new request annotation: the current time. Every new
// value is served once, so it must differ from the one the annotation holds and the
// last one served, even when two requests come within a second.
func (o *Options) requestValue(current, served string) (string, error) {
	value := o.Clock.Now().UTC().Format(time.RFC3339Nano)
	if value == current || value == served {
		return "", fmt.Errorf("a rotation was requested at %s already", value)
	}
	return value, nil
}

// patchRequest sets the request annotation key to value and the annotation flag to
// "true", or removes it when on is false, in one merge patch: a flag left by an
// earlier request would otherwise apply to this one too.
func patchRequest(ctx context.Context, c client.Client, obj client.Object, key, value, flag string, on bool) error {
	var v any
	if on {
		v = "true"
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]any{key: value, flag: v}}})
	if err != nil {
		return err
	}
	return c.Patch(ctx, obj, client.RawPatch("application/merge-patch+json", patch), client.FieldOwner(FieldManager))
}
