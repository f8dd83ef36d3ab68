package plugin

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

type revokeOptions struct {
	*Options
	yes bool
}

func newRevokeCommand(o *Options) *cobra.Command {
	r := &revokeOptions{Options: o}
	cmd := &cobra.Command{
		Use:   "revoke NAME",
		Short: "Revoke every token of an APIToken at once",
		Long: `revoke sets spec.revoked to true: every token of the APIToken is refused at once,
its Secret is deleted (or emptied, with deletionPolicy Retain), and the object
stays as an audit trail. It asks for confirmation unless --yes is given.`,
		Example: `  kubectl apitoken revoke ci-pipeline -n acme
  kubectl apitoken revoke ci-pipeline -n acme --yes`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return r.run(cmd.Context(), args[0]) },
	}
	cmd.Flags().BoolVarP(&r.yes, "yes", "y", false, "Do not ask for confirmation.")
	return cmd
}

// errNotConfirmed is returned when the user did not answer yes.
var errNotConfirmed = errors.New("not revoked: the revocation was not confirmed")

func (r *revokeOptions) run(ctx context.Context, name string) error {
	c, ns, t, err := r.loadToken(ctx, name)
	if err != nil {
		return err
	}
	if t.Spec.Revoked {
		fmt.Fprintf(r.Out, "apitoken/%s is already revoked\n", name)
		return nil
	}
	if !r.yes {
		fmt.Fprintf(r.Out, "Revoke APIToken %s/%s (tenant %s, role %s)? Every token of it stops working at once. [y/N]: ", ns, name, t.Spec.Tenant, t.Spec.Role)
		answer, _ := bufio.NewReader(r.In).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
			return errNotConfirmed
		}
	}
	// The patch is made against the version read, so an edit in between (someone else
	// revoked and un-revoked it) is a conflict rather than silently overwritten.
	patch := client.MergeFromWithOptions(t.DeepCopy(), client.MergeFromWithOptimisticLock{})
	t.Spec.Revoked = true
	if err := c.Patch(ctx, t, patch, client.FieldOwner(FieldManager)); err != nil {
		return err
	}
	fmt.Fprintf(r.Out, "apitoken/%s revoked\n", name)
	return nil
}
