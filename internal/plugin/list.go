package plugin

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	authnv1 "k8s.io/api/authentication/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
)

type listOptions struct {
	*Options
	allNamespaces bool
	selector      string
	output        string
	mine          bool
	createdBy     string
}

func newListCommand(o *Options) *cobra.Command {
	l := &listOptions{Options: o}
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls", "get"},
		Short:   "List APITokens with their tenant, role, expiry and last use",
		Example: `  # The tokens of the current namespace
  kubectl apitoken list

  # Every namespace, with token IDs, issuers and renewal times
  kubectl apitoken list -A -o wide

  # The tokens I created, in every namespace, like a list of personal access tokens
  kubectl apitoken list -A --mine

  # The tokens the GitOps controller created
  kubectl apitoken list -A --created-by system:serviceaccount:argocd:argocd-application-controller`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return l.run(cmd.Context()) },
	}
	cmd.Flags().BoolVarP(&l.allNamespaces, "all-namespaces", "A", false, "List the APITokens of every namespace.")
	cmd.Flags().StringVarP(&l.selector, "selector", "l", "", "Label selector to filter on, as kubectl get -l.")
	cmd.Flags().StringVarP(&l.output, "output", "o", "", "Output format: wide, json or yaml.")
	cmd.Flags().BoolVar(&l.mine, "mine", false, "Only the APITokens you created (as the API server knows you).")
	cmd.Flags().StringVar(&l.createdBy, "created-by", "", "Only the APITokens USER created (a user name, or system:serviceaccount:NAMESPACE:NAME).")
	cmd.MarkFlagsMutuallyExclusive("mine", "created-by")
	return cmd
}

func (l *listOptions) run(ctx context.Context) error {
	if err := checkOutput(l.output, outputTable, outputWide, outputJSON, outputYAML); err != nil {
		return err
	}
	c, err := l.client()
	if err != nil {
		return err
	}
	var opts []client.ListOption
	if !l.allNamespaces {
		ns, err := l.namespace()
		if err != nil {
			return err
		}
		opts = append(opts, client.InNamespace(ns))
	}
	if l.selector != "" {
		sel, err := labels.Parse(l.selector)
		if err != nil {
			return fmt.Errorf("invalid selector: %w", err)
		}
		opts = append(opts, client.MatchingLabelsSelector{Selector: sel})
	}
	creator := l.createdBy
	if l.mine {
		if creator, err = whoAmI(ctx, c); err != nil {
			return err
		}
	}
	var toks tokensv1.APITokenList
	if err := c.List(ctx, &toks, opts...); err != nil {
		return err
	}
	if creator != "" {
		// Usernames are not label values, so the annotation is matched here.
		toks.Items = slices.DeleteFunc(toks.Items, func(t tokensv1.APIToken) bool {
			return t.Annotations[tokensv1.CreatedByAnnotation] != creator
		})
	}
	sort.Slice(toks.Items, func(i, j int) bool {
		a, b := toks.Items[i], toks.Items[j]
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Name < b.Name
	})

	switch l.output {
	case outputJSON, outputYAML:
		for i := range toks.Items {
			toks.Items[i].SetGroupVersionKind(tokensv1.GroupVersion.WithKind("APIToken"))
		}
		return printObject(l.Out, l.output, &toks, tokensv1.GroupVersion.WithKind("APITokenList"))
	}
	if len(toks.Items) == 0 {
		by := ""
		if creator != "" {
			by = fmt.Sprintf(" created by %s", creator)
		}
		if l.allNamespaces {
			_, err := fmt.Fprintf(l.ErrOut, "No APITokens%s found.\n", by)
			return err
		}
		ns, _ := l.namespace()
		_, err := fmt.Fprintf(l.ErrOut, "No APITokens%s found in namespace %s.\n", by, ns)
		return err
	}
	return l.printTable(toks.Items)
}

// printTable prints one line per APIToken. Wide adds what is useful when debugging a
// rotation: the issuer, the token ID, when it renews, how often it rotated, the
// Secret and why it is not Ready.
func (l *listOptions) printTable(items []tokensv1.APIToken) error {
	now := l.Clock.Now()
	w := newTable(l.Out)
	wide := l.output == outputWide
	head := "NAME\tTENANT\tROLE\tFORMAT\tEXPIRES IN\tLAST USED\tREADY"
	if l.allNamespaces {
		head = "NAMESPACE\t" + head
	}
	if wide {
		head += "\tREASON\tISSUER\tTOKEN ID\tRENEWS IN\tROTATIONS\tSECRET"
	}
	fmt.Fprintln(w, head)
	for i := range items {
		t := &items[i]
		st := &t.Status
		format, expires, tokenID := string(t.Spec.Format), none, none
		if st.Current != nil {
			format, tokenID = string(st.Current.Format), st.Current.TokenID
			expires = until(now, &st.Current.ExpiresAt)
		}
		if t.Spec.Revoked {
			expires = "<revoked>"
		}
		ready, reason := conditionStatus(st.Conditions, tokensv1.ConditionReady)
		tenant, role := t.Spec.Tenant, t.Spec.Role
		if ms := t.Spec.Memberships; len(ms) > 0 {
			// A tenant and its role in the same place of each column.
			tenants, roles := make([]string, len(ms)), make([]string, len(ms))
			for i, m := range ms {
				tenants[i], roles[i] = m.Tenant, m.Role
			}
			tenant, role = strings.Join(tenants, ","), strings.Join(roles, ",")
		}
		row := fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s\t%s", t.Name, tenant, role, orNone(format), expires, ago(now, st.LastUsedTime), ready)
		if l.allNamespaces {
			row = t.Namespace + "\t" + row
		}
		if wide {
			renews := none
			if st.RenewalTime != nil && st.Current != nil && !t.Spec.Revoked {
				renews = until(now, st.RenewalTime)
			}
			row += fmt.Sprintf("\t%s\t%s\t%s\t%s\t%s\t%s", orNone(reason), t.Spec.IssuerName(), tokenID, renews,
				strconv.FormatInt(st.Rotations, 10), orNone(secretName(t)))
		}
		fmt.Fprintln(w, row)
	}
	return w.Flush()
}

// whoAmI is the user the API server authenticates the plugin's credentials as.
func whoAmI(ctx context.Context, c client.Client) (string, error) {
	review := &authnv1.SelfSubjectReview{}
	if err := c.Create(ctx, review); err != nil {
		return "", fmt.Errorf("asking the API server who you are: %w", err)
	}
	return review.Status.UserInfo.Username, nil
}

// secretName is the Secret the token is written to: the status says, or else the
// spec, or else the APIToken's name.
func secretName(t *tokensv1.APIToken) string {
	switch {
	case t.Status.SecretName != "":
		return t.Status.SecretName
	case t.Spec.Secret != nil && t.Spec.Secret.Name != "":
		return t.Spec.Secret.Name
	}
	return t.Name
}
