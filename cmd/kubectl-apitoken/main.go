// Command kubectl-apitoken is the kubectl plugin of apitoken-operator: put it on the
// PATH and run `kubectl apitoken`. It lists APITokens with their expiry, describes,
// rotates and revokes them, inspects tokens, writes APIToken manifests and exchanges
// a token for a short-lived one.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"

	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/apitoken-operator/apitoken-operator/internal/plugin"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	cmd := plugin.NewCommand(&plugin.Options{
		IOStreams: genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr},
	})
	if err := cmd.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}
