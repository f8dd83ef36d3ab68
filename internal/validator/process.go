package validator

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1 "github.com/apitoken-operator/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-operator/apitoken-operator/internal/validator/index"
)

// Front is what every process that authenticates tokens the validator's way runs
// beside its handlers: the index, fed by informers on APITokens and
// ClusterTokenIssuers (never Secrets), and a client for the reads past it.
type Front struct {
	Index  *index.Index
	Cache  cache.Cache
	Client client.Client
	// Synced reports whether the index has seen every object of the initial lists.
	Synced func() bool
	// Live reads APITokens past the index; nil when --live-lookup-rate is 0.
	Live *LiveLookup
}

// NewFront builds a Front over the API server of cfg; Run starts it.
func NewFront(ctx context.Context, cfg *rest.Config, f *FrontFlags, audiences []string, clk clock.Clock, log logr.Logger) (*Front, error) {
	// Core types for the exchange's reads of key Secrets; the informers watch only
	// the two kinds of CacheOptions.
	scheme := k8sruntime.NewScheme()
	if err := tokensv1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := corev1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = float32(f.KubeAPIQPS), f.KubeAPIBurst
	fr := &Front{Index: index.New(index.Config{Audiences: audiences, Clock: clk})}
	var err error
	if fr.Cache, err = cache.New(cfg, CacheOptions(scheme)); err != nil {
		return nil, fmt.Errorf("creating the cache: %w", err)
	}
	if fr.Synced, err = Watch(ctx, fr.Cache, fr.Index, log); err != nil {
		return nil, err
	}
	if fr.Client, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		return nil, err
	}
	if f.LiveRate > 0 {
		fr.Live = NewLiveLookup(fr.Client, clk, f.LiveRate, 2*time.Second)
	}
	return fr, nil
}

// Run starts the informers and serves api on --listen-address and probes on
// --metrics-bind-address until ctx is done (nil) or one of them fails.
func (fr *Front) Run(ctx context.Context, f *FrontFlags, api, probes http.Handler, log logr.Logger) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 3)
	go func() {
		if err := fr.Cache.Start(ctx); err != nil {
			errc <- fmt.Errorf("cache: %w", err)
		}
	}()
	if f.MetricsAddr != "" {
		mln, err := net.Listen("tcp", f.MetricsAddr)
		if err != nil {
			return err
		}
		go func() { errc <- Serve(ctx, mln, probes, ServeOptions{Insecure: true, Log: log}) }()
	}
	ln, err := net.Listen("tcp", f.ListenAddr)
	if err != nil {
		return err
	}
	go func() {
		errc <- Serve(ctx, ln, api, ServeOptions{CertFile: f.CertFile, KeyFile: f.KeyFile, Insecure: f.InsecureHTTP, Log: log})
	}()
	go func() {
		if fr.Cache.WaitForCacheSync(ctx) {
			log.Info("Caches synced; ready", "tokens", fr.Index.Len())
		}
	}()
	log.Info("Serving", "address", f.ListenAddr, "tls", !f.InsecureHTTP)
	select {
	case err := <-errc:
		if ctx.Err() == nil {
			return err
		}
	case <-ctx.Done():
	}
	return nil
}
