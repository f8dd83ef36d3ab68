package plugin

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/duration"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/pkg/validatorapi"
)

// maxEvents is how many of the most recent events describe shows.
const maxEvents = 10

func newDescribeCommand(o *Options) *cobra.Command {
	return &cobra.Command{
		Use:     "describe NAME",
		Short:   "Show an APIToken's spec, status, conditions, token IDs and recent events",
		Example: `  kubectl apitoken describe ci-pipeline -n acme`,
		Args:    cobra.ExactArgs(1),
		RunE:    func(cmd *cobra.Command, args []string) error { return describe(cmd.Context(), o, args[0]) },
	}
}

func describe(ctx context.Context, o *Options, name string) error {
	c, err := o.client()
	if err != nil {
		return err
	}
	ns, err := o.namespace()
	if err != nil {
		return err
	}
	t, err := getToken(ctx, c, ns, name)
	if err != nil {
		return err
	}
	events, err := recentEvents(ctx, c, t)
	if err != nil {
		// Events help but are not the point: a user who may read APITokens but not
		// events still gets the rest.
		fmt.Fprintf(o.ErrOut, "Warning: listing events: %v\n", err)
	}
	return printDescription(o.Out, o.Clock.Now(), t, events)
}

// getToken reads an APIToken, with a not-found error that says where it looked.
func getToken(ctx context.Context, c client.Client, ns, name string) (*tokensv1.APIToken, error) {
	t := &tokensv1.APIToken{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, t); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("APIToken %q not found in namespace %q", name, ns)
		}
		return nil, err
	}
	return t, nil
}

// recentEvents lists the events about t, newest last, at most maxEvents.
func recentEvents(ctx context.Context, c client.Client, t *tokensv1.APIToken) ([]corev1.Event, error) {
	var evs corev1.EventList
	sel := fields.Set{"involvedObject.uid": string(t.UID)}.AsSelector()
	if err := c.List(ctx, &evs, client.InNamespace(t.Namespace), client.MatchingFieldsSelector{Selector: sel}); err != nil {
		return nil, err
	}
	items := evs.Items
	sort.SliceStable(items, func(i, j int) bool { return eventTime(&items[i]).Before(eventTime(&items[j])) })
	if len(items) > maxEvents {
		items = items[len(items)-maxEvents:]
	}
	return items, nil
}

// eventTime is when an event last happened, whichever API wrote it.
func eventTime(e *corev1.Event) time.Time {
	switch {
	case e.Series != nil && !e.Series.LastObservedTime.IsZero():
		return e.Series.LastObservedTime.Time
	case !e.LastTimestamp.IsZero():
		return e.LastTimestamp.Time
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	case !e.FirstTimestamp.IsZero():
		return e.FirstTimestamp.Time
	}
	return e.CreationTimestamp.Time
}

// describer writes "Label:  value" lines, aligned per section, indented by level.
type describer struct {
	w    io.Writer
	rows [][2]string
}

func (d *describer) line(level int, label, value string) {
	d.rows = append(d.rows, [2]string{strings.Repeat("  ", level) + label, value})
}

func (d *describer) flush() {
	tw := newTable(d.w)
	for _, r := range d.rows {
		if r[1] == "" && strings.HasSuffix(r[0], ":") {
			fmt.Fprintln(tw, r[0])
			continue
		}
		if r[0] == "" {
			// A value continuing the row above.
			fmt.Fprintf(tw, "\t%s\n", r[1])
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\n", r[0]+":", r[1])
	}
	_ = tw.Flush()
	d.rows = nil
}

func printDescription(w io.Writer, now time.Time, t *tokensv1.APIToken, events []corev1.Event) error {
	d := &describer{w: w}
	s := &t.Spec
	d.line(0, "Name", t.Name)
	d.line(0, "Namespace", t.Namespace)
	d.line(0, "Issuer", t.Spec.IssuerName())
	if c, ok := t.Annotations[tokensv1.CreatedByAnnotation]; ok {
		d.line(0, "Created by", c)
	}
	if len(s.Memberships) == 0 {
		d.line(0, "Tenant", s.Tenant)
		d.line(0, "Sub-tenant", orNone(s.SubTenant))
		d.line(0, "Role", s.Role)
	} else {
		// One membership a line, as kubectl describe lists labels.
		for i := range s.Memberships {
			label := ""
			if i == 0 {
				label = "Memberships"
			}
			d.line(0, label, membershipList(s.Memberships[i:i+1]))
		}
	}
	d.line(0, "Scopes", list(s.Scopes))
	d.line(0, "Audiences", orNone(strings.Join(s.Audiences, ",")+issuerDefault(len(s.Audiences) == 0)))
	d.line(0, "Format", orNone(string(s.Format)+issuerDefault(s.Format == "")))
	d.line(0, "Lifetime", s.Lifetime.Duration.String())
	d.line(0, "Rotation", rotation(s))
	d.line(0, "Revoked", fmt.Sprint(s.Revoked))
	d.line(0, "Secret", secretName(t))
	if s.Description != "" {
		d.line(0, "Description", s.Description)
	}
	d.flush()

	st := &t.Status
	fmt.Fprintln(w, "Status:")
	if st.Current != nil {
		fmt.Fprintln(w, "  Current token:")
		issued(d, now, st.Current)
	} else {
		d.line(1, "Current token", none)
	}
	d.line(1, "Renewal", timestamp(now, st.RenewalTime))
	d.line(1, "Rotations", fmt.Sprint(st.Rotations))
	d.line(1, "Last used", ago(now, st.LastUsedTime))
	d.line(1, "Observed generation", fmt.Sprintf("%d (current %d)", st.ObservedGeneration, t.Generation))
	d.flush()
	if len(st.PreviousTokens) == 0 {
		fmt.Fprintln(w, "  Previous tokens:  <none>")
	} else {
		fmt.Fprintln(w, "  Previous tokens:")
		tw := newTable(w)
		fmt.Fprintln(tw, "    TOKEN ID\tFORMAT\tEXPIRES\tRETIRES")
		for i := range st.PreviousTokens {
			p := &st.PreviousTokens[i]
			retires := "at expiry"
			if p.RetireAt != nil {
				retires = relative(now, p.RetireAt.Time)
			}
			fmt.Fprintf(tw, "    %s\t%s\t%s\t%s\n", p.TokenID, p.Format, relative(now, p.ExpiresAt.Time), retires)
		}
		_ = tw.Flush()
	}

	if len(st.Conditions) == 0 {
		fmt.Fprintln(w, "Conditions:  <none>")
	} else {
		fmt.Fprintln(w, "Conditions:")
		tw := newTable(w)
		fmt.Fprintln(tw, "  TYPE\tSTATUS\tREASON\tAGE\tMESSAGE")
		for _, c := range st.Conditions {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", c.Type, c.Status, c.Reason, age(now, c.LastTransitionTime.Time), c.Message)
		}
		_ = tw.Flush()
	}

	if len(events) == 0 {
		fmt.Fprintln(w, "Events:  <none>")
		return nil
	}
	fmt.Fprintln(w, "Events:")
	tw := newTable(w)
	fmt.Fprintln(tw, "  TYPE\tREASON\tAGE\tFROM\tMESSAGE")
	for i := range events {
		e := &events[i]
		from := e.ReportingController
		if from == "" {
			from = e.Source.Component
		}
		a := age(now, eventTime(e))
		if n := eventCount(e); n > 1 {
			a += fmt.Sprintf(" (x%d)", n)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", e.Type, e.Reason, a, orNone(from), strings.TrimSpace(e.Message))
	}
	return tw.Flush()
}

// issued prints one issued token under "Current token:".
func issued(d *describer, now time.Time, it *tokensv1.IssuedToken) {
	d.line(2, "Token ID", it.TokenID)
	d.line(2, "Format", string(it.Format))
	if it.SigningKeyID != "" {
		d.line(2, "Signing key", it.SigningKeyID)
	}
	if it.TokenHash != "" {
		d.line(2, "Hash", it.TokenHash)
	}
	cl := it.Claims
	if len(cl.Memberships) > 0 {
		d.line(2, "Claims", fmt.Sprintf("memberships=%s scopes=%s audiences=%s", membershipList(cl.Memberships), list(cl.Scopes), list(cl.Audiences)))
	} else {
		d.line(2, "Claims", fmt.Sprintf("tenant=%s sub-tenant=%s role=%s scopes=%s audiences=%s",
			cl.Tenant, orNone(cl.SubTenant), cl.Role, list(cl.Scopes), list(cl.Audiences)))
	}
	d.line(2, "Issued", timestamp(now, &it.IssuedAt))
	d.line(2, "Expires", timestamp(now, &it.ExpiresAt))
}

// membershipList writes memberships as the validator's headers do: tenant[/sub]:role,
// separated by commas.
func membershipList(ms []tokensv1.Membership) string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = validatorapi.Membership{Tenant: m.Tenant, SubTenant: m.SubTenant, Role: m.Role}.String()
	}
	return strings.Join(out, ",")
}

func eventCount(e *corev1.Event) int32 {
	if e.Series != nil {
		return e.Series.Count
	}
	return e.Count
}

// age is how long ago t was, "<unknown>" when unset.
func age(now, t time.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(now.Sub(t))
}

// issuerDefault marks a field left to the issuer's default.
func issuerDefault(unset bool) string {
	if unset {
		return "(issuer default)"
	}
	return ""
}

// rotation summarises spec.rotation the way the controller reads it.
func rotation(s *tokensv1.APITokenSpec) string {
	policy := tokensv1.RotationAuto
	var renew, grace *metav1.Duration
	if r := s.Rotation; r != nil {
		if r.Policy != "" {
			policy = r.Policy
		}
		renew, grace = r.RenewBefore, r.GracePeriod
	}
	if policy == tokensv1.RotationDisabled {
		return "Disabled (the token expires)"
	}
	rb := "lifetime/3"
	if renew != nil {
		rb = renew.Duration.String()
	}
	gp := "until the previous token expires"
	if grace != nil {
		gp = grace.Duration.String()
	}
	return fmt.Sprintf("Auto (renew %s before expiry; grace period %s)", rb, gp)
}
