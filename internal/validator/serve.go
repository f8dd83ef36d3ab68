package validator

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
)

// ServeOptions say how the server listens.
type ServeOptions struct {
	// CertFile and KeyFile are the TLS certificate and key, reloaded when the files
	// change (a cert-manager renewal or a rotated Secret volume).
	CertFile, KeyFile string
	// Insecure serves plain HTTP; it is refused unless no certificate is given, so a
	// typo in a flag cannot silently turn TLS off.
	Insecure bool
	Log      logr.Logger
}

// Serve answers h on ln until ctx is done, then drains open requests for up to 10s.
func Serve(ctx context.Context, ln net.Listener, h http.Handler, opts ServeOptions) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	withTLS := opts.CertFile != "" || opts.KeyFile != ""
	switch {
	case withTLS && opts.Insecure:
		return errors.New("both a TLS certificate and insecure HTTP were asked for; choose one")
	case withTLS && (opts.CertFile == "" || opts.KeyFile == ""):
		return errors.New("TLS needs both a certificate file and a key file")
	case !withTLS && !opts.Insecure:
		return errors.New("no TLS certificate given: pass a certificate and key, or ask for insecure HTTP explicitly")
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	if withTLS {
		w, err := certwatcher.New(opts.CertFile, opts.KeyFile)
		if err != nil {
			return fmt.Errorf("loading the TLS certificate: %w", err)
		}
		go func() {
			if err := w.Start(ctx); err != nil {
				opts.Log.Error(err, "Watching the TLS certificate failed")
			}
		}()
		srv.TLSConfig = &tls.Config{GetCertificate: w.GetCertificate, MinVersion: tls.VersionTLS12}
		go func() { errc <- srv.ServeTLS(ln, "", "") }()
	} else {
		go func() { errc <- srv.Serve(ln) }()
	}

	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, stop := context.WithTimeout(context.Background(), 10*time.Second)
	defer stop()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return err
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
