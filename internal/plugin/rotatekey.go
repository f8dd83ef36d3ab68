package plugin

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
)

type rotateKeyOptions struct {
	*Options
	compromised bool
	yes         bool
	wait        bool
	timeout     time.Duration
}

func newRotateKeyCommand(o *Options) *cobra.Command {
	r := &rotateKeyOptions{Options: o}
	cmd := &cobra.Command{
		Use:   "rotate-key ISSUER",
		Short: "Ask the operator for a new signing key of a ClusterTokenIssuer now",
		Long: `rotate-key sets the apitoken.dev/rotate-key annotation of a ClusterTokenIssuer to
the current time. The operator publishes a new key in the JWKS at once and signs
with it once it has been published spec.signing.publishBefore (default 5m), so
that verifiers holding a cached JWKS have it before they meet a token signed with
it. Tokens signed with the old key stay valid until they expire.

--compromised treats every key of the issuer as leaked (they all lived in one
Secret): they leave the JWKS at once, a new key signs at once, every JWT signed
with a withdrawn key is refused from then on, and each APIToken holding one gets
a new token. Offline verifiers refuse tokens of the new key until they fetch the
JWKS again. It asks for confirmation unless --yes is given.`,
		Example: `  # Rotate now, following the pre-publication rule
  kubectl apitoken rotate-key default --wait

  # The key Secret leaked: withdraw every key and re-mint every token they signed
  kubectl apitoken rotate-key default --compromised --wait --timeout 10m`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return r.run(cmd.Context(), args[0]) },
	}
	cmd.Flags().BoolVar(&r.compromised, "compromised", false, "Withdraw every key at once and re-mint every token signed with one.")
	cmd.Flags().BoolVarP(&r.yes, "yes", "y", false, "Do not ask for confirmation of --compromised.")
	cmd.Flags().BoolVar(&r.wait, "wait", false, "Wait until the operator has served the request (with --compromised: until every token is re-minted).")
	cmd.Flags().DurationVar(&r.timeout, "timeout", time.Minute, "How long --wait waits.")
	return cmd
}

// errKeyRotationNotConfirmed is returned when the user did not confirm --compromised.
var errKeyRotationNotConfirmed = errors.New("not rotated: the withdrawal of the keys was not confirmed")

func (r *rotateKeyOptions) run(ctx context.Context, name string) error {
	c, err := r.client()
	if err != nil {
		return err
	}
	iss := &tokensv1.ClusterTokenIssuer{}
	if err := c.Get(ctx, client.ObjectKey{Name: name}, iss); err != nil {
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("no ClusterTokenIssuer named %q", name)
		}
		return err
	}
	value, err := r.requestValue(iss.Annotations[tokensv1.RotateKeyAnnotation], iss.Status.LastRotateKeyRequest)
	if err != nil {
		return err
	}
	if r.compromised && !r.yes {
		fmt.Fprintf(r.Out, "Withdraw every signing key of ClusterTokenIssuer %s (%s) at once? Every JWT they signed stops working and its APIToken is re-minted. [y/N]: ",
			name, strings.Join(keyIDs(iss), ", "))
		answer, _ := bufio.NewReader(r.In).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
			return errKeyRotationNotConfirmed
		}
	}
	if err := patchRequest(ctx, c, iss, tokensv1.RotateKeyAnnotation, value, tokensv1.KeyCompromisedAnnotation, r.compromised); err != nil {
		return err
	}
	msg := "key rotation requested"
	if r.compromised {
		msg = "compromised-key rotation requested: every key is withdrawn at once"
	}
	fmt.Fprintf(r.Out, "clustertokenissuer/%s %s (%s=%s)\n", name, msg, tokensv1.RotateKeyAnnotation, value)
	if !r.wait {
		return nil
	}
	return r.waitServed(ctx, c, name, value)
}

// keyIDs are the IDs of the keys the issuer's status lists.
func keyIDs(iss *tokensv1.ClusterTokenIssuer) []string {
	var ids []string
	for _, k := range iss.Status.Keys {
		ids = append(ids, k.KeyID)
	}
	if len(ids) == 0 {
		return []string{none}
	}
	return ids
}

// waitServed waits until the controller recorded value as served, and with
// --compromised until no token signed with a withdrawn key is left to re-mint.
func (r *rotateKeyOptions) waitServed(ctx context.Context, c client.Client, name, value string) error {
	var got *tokensv1.ClusterTokenIssuer
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, r.timeout, true, func(ctx context.Context) (bool, error) {
		cur := &tokensv1.ClusterTokenIssuer{}
		if err := c.Get(ctx, client.ObjectKey{Name: name}, cur); err != nil {
			return false, err
		}
		got = cur
		if cur.Status.LastRotateKeyRequest != value {
			return false, nil
		}
		return !r.compromised || (cur.Status.LastWithdrawal != nil && cur.Status.LastWithdrawal.Remaining == 0), nil
	})
	if err != nil {
		if got != nil && got.Status.LastWithdrawal != nil && r.compromised && got.Status.LastRotateKeyRequest == value {
			w := got.Status.LastWithdrawal
			return fmt.Errorf("waiting for the re-minting of the tokens of %s: %d of %d APITokens left: %w", name, w.Remaining, w.Tokens, err)
		}
		return fmt.Errorf("waiting for the key rotation of %s: %w", name, err)
	}
	st := got.Status
	switch {
	case r.compromised:
		w := st.LastWithdrawal
		fmt.Fprintf(r.Out, "clustertokenissuer/%s withdrew keys %s; %d APITokens re-minted; key %s signs new tokens\n",
			name, strings.Join(w.KeyIDs, ", "), w.Tokens, st.CurrentKeyID)
	case st.NextKeyID != "":
		at := none
		if st.NextRotationTime != nil {
			at = st.NextRotationTime.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(r.Out, "clustertokenissuer/%s published key %s; it signs new tokens from %s\n", name, st.NextKeyID, at)
	default:
		fmt.Fprintf(r.Out, "clustertokenissuer/%s key %s signs new tokens\n", name, st.CurrentKeyID)
	}
	return nil
}
