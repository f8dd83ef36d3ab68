package policy

import (
	"slices"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

func TestRotationWarnings(t *testing.T) {
	spec := field.NewPath("spec", "rotation")
	tests := []struct {
		name                     string
		path                     *field.Path
		renewBefore, gracePeriod time.Duration
		want                     []string
	}{
		{"unset windows take safe defaults", spec, 0, 0, nil},
		{"long enough", spec, MinPickupTime, MinPickupTime, nil},
		{"short renewBefore", spec, time.Minute, 0, []string{
			"spec.rotation.renewBefore 1m0s is shorter than 2m0s: pods may not pick up the new token before the old one expires",
		}},
		{"short gracePeriod", spec, 0, 30 * time.Second, []string{
			"spec.rotation.gracePeriod 30s is shorter than 2m0s: pods may still present the previous token after it stopped being accepted",
		}},
		{"both short, renewBefore first; the controller names fields from the spec", field.NewPath("rotation"), MinPickupTime - time.Second, time.Second, []string{
			"rotation.renewBefore 1m59s is shorter than 2m0s: pods may not pick up the new token before the old one expires",
			"rotation.gracePeriod 1s is shorter than 2m0s: pods may still present the previous token after it stopped being accepted",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := RotationWarnings(tt.path, tt.renewBefore, tt.gracePeriod); !slices.Equal(got, tt.want) {
				t.Errorf("RotationWarnings = %q, want %q", got, tt.want)
			}
		})
	}
}
