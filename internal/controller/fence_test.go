package controller

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
)

func TestFence(t *testing.T) {
	tests := []struct {
		name    string
		leading func() bool
		want    error
	}{
		{"no leader election", nil, nil},
		{"holds the lease", func() bool { return true }, nil},
		{"may have lost it", func() bool { return false }, ErrNotLeader},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Fence(tt.leading); !errors.Is(got, tt.want) || (tt.want == nil && got != nil) {
				t.Errorf("Fence = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestFenced(t *testing.T) {
	tests := []struct {
		name       string
		err        error
		wantFenced bool
		want       ctrl.Result
	}{
		{"a pass that went through", nil, false, ctrl.Result{}},
		{"another error is the caller's", errors.New("conflict"), false, ctrl.Result{}},
		{"the fence: retry soon", ErrNotLeader, true, ctrl.Result{RequeueAfter: NotLeaderRetry}},
		{"the fence, wrapped", fmt.Errorf("minting: %w", ErrNotLeader), true, ctrl.Result{RequeueAfter: NotLeaderRetry}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, fenced := Fenced(context.Background(), tt.err)
			if fenced != tt.wantFenced || got != tt.want {
				t.Errorf("Fenced = %+v, %v; want %+v, %v", got, fenced, tt.want, tt.wantFenced)
			}
		})
	}
	if NotLeaderRetry <= 0 || NotLeaderRetry > 10*time.Second {
		t.Errorf("NotLeaderRetry = %s: a fenced pass must come back, and soon", NotLeaderRetry)
	}
}
