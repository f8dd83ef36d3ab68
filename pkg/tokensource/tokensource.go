// Package tokensource gives a workload the token the apitoken-operator keeps in a
// mounted Secret, always the newest complete one, without ever blocking the caller.
//
// The kubelet updates a mounted Secret atomically (its AtomicWriter): the files a pod
// sees ("token", "tokenID", "expiresAt") are symlinks into "..data", itself a symlink
// to a timestamped directory such as "..2026_11_22_06_00_00.123456789". An update
// writes a new timestamped directory, points a "..data_tmp" symlink at it, renames
// "..data_tmp" over "..data" and removes the old directory. A Source reads the files
// through the resolved timestamped directory, so it sees one update or the other,
// never a mix, and it keeps the last good token whenever a read fails or finds
// something incomplete.
//
// A Source re-reads the directory on every file-system event in it (fsnotify) and, as
// a fallback for volumes where events are lost, on a timer.
package tokensource

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/apitoken-operator/apitoken-operator/internal/token"
)

// Keys of the Secret the operator writes, which are the file names of its volume. They
// are the API's (v1alpha1.SecretKeyToken and the rest), repeated here so that a
// workload does not compile the Kubernetes API to read its token; a test holds the
// two to each other.
const (
	KeyToken     = "token"
	KeyTokenID   = "tokenID"
	KeyExpiresAt = "expiresAt"
	KeyTenant    = "tenant"
	KeyRole      = "role"
)

// dataDir is the kubelet's symlink to the current timestamped directory.
const dataDir = "..data"

// DefaultResyncInterval is how often a Source re-reads the directory when no
// file-system event told it to.
const DefaultResyncInterval = 30 * time.Second

// ErrNoToken is returned by Source.Token before a complete token was ever read.
var ErrNoToken = errors.New("tokensource: no complete token has been read yet")

// Token is one complete read of the token directory. It is immutable.
type Token struct {
	// Value is the bearer token. Never log it; log ID.
	Value string
	// ID is the token's public ID (the "tokenID" file, or the JWT's jti), safe to log.
	ID string
	// ExpiresAt is the "expiresAt" file; zero when absent.
	ExpiresAt time.Time
	// ReadAt is when the Source read it, by its clock.
	ReadAt time.Time
}

// Options configure a Source. The zero value is usable.
type Options struct {
	// ResyncInterval is how often the directory is re-read without a file-system
	// event. Default DefaultResyncInterval; negative disables the fallback.
	ResyncInterval time.Duration
	// OnChange, when set, is called with each new token, on the Source's goroutine,
	// one call at a time. It must not block for long.
	OnChange func(*Token)
	// OnError, when set, is called when a read fails or finds an incomplete token; the
	// last good token is kept. The error never holds token material.
	OnError func(error)
	// Clock is the clock of ReadAt and the resync timer. Default: the real clock.
	Clock Clock
}

// Clock is what a Source needs of a clock; tests pass a fake one.
type Clock interface {
	Now() time.Time
	NewTicker(d time.Duration) Ticker
}

// Ticker is a time.Ticker behind an interface, so that a fake clock can drive it.
type Ticker interface {
	C() <-chan time.Time
	Stop()
}

type realClock struct{}

func (realClock) Now() time.Time                   { return time.Now() }
func (realClock) NewTicker(d time.Duration) Ticker { return realTicker{time.NewTicker(d)} }

type realTicker struct{ t *time.Ticker }

func (r realTicker) C() <-chan time.Time { return r.t.C }
func (r realTicker) Stop()               { r.t.Stop() }

// Source follows a mounted token Secret. It is safe for concurrent use.
type Source struct {
	dir  string
	opts Options

	cur atomic.Pointer[Token]
	// changed is closed and replaced when the token changes.
	changed atomic.Pointer[chan struct{}]
	// lastErr is the error of the last read, nil after a good read.
	lastErr atomic.Pointer[error]

	// reloadMu serialises reads, so a slow read cannot overwrite a newer one.
	reloadMu sync.Mutex
	kick     chan struct{}
	watcher  *fsnotify.Watcher
	stop     context.CancelFunc
	done     chan struct{}
}

// New reads dir once and starts following it until Close. It fails only when dir
// cannot be watched; a directory that does not hold a complete token yet is not an
// error: Token returns ErrNoToken until one appears.
func New(dir string, opts Options) (*Source, error) {
	if opts.ResyncInterval == 0 {
		opts.ResyncInterval = DefaultResyncInterval
	}
	if opts.Clock == nil {
		opts.Clock = realClock{}
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("tokensource: watching %s: %w", dir, err)
	}
	if err := w.Add(dir); err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("tokensource: watching %s: %w", dir, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Source{dir: dir, opts: opts, kick: make(chan struct{}, 1), watcher: w, stop: cancel, done: make(chan struct{})}
	ch := make(chan struct{})
	s.changed.Store(&ch)
	// Read before returning, so a caller that starts with a mounted Secret has its
	// token at once; the watch is already in place, so no update is missed.
	s.Reload()
	go s.run(ctx)
	return s, nil
}

// Close stops following the directory. The last token stays readable.
func (s *Source) Close() error {
	s.stop()
	err := s.watcher.Close()
	<-s.done
	return err
}

// Token returns the newest complete token's value, or ErrNoToken. It never blocks.
func (s *Source) Token() (string, error) {
	t := s.cur.Load()
	if t == nil {
		return "", ErrNoToken
	}
	return t.Value, nil
}

// Current returns the newest complete token, or nil before the first one.
func (s *Source) Current() *Token { return s.cur.Load() }

// Err returns the error of the last read, or nil if it found a complete token.
func (s *Source) Err() error {
	if e := s.lastErr.Load(); e != nil {
		return *e
	}
	return nil
}

// Changed returns a channel that is closed the next time the token changes. Call it
// again after it fires: each channel fires once.
func (s *Source) Changed() <-chan struct{} { return *s.changed.Load() }

// Wait blocks until the Source holds a token or ctx is done, for callers that have
// nothing to do without one.
func (s *Source) Wait(ctx context.Context) (*Token, error) {
	for {
		ch := s.Changed()
		if t := s.cur.Load(); t != nil {
			return t, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			if err := s.Err(); err != nil {
				return nil, fmt.Errorf("%w: %w", ctx.Err(), err)
			}
			return nil, ctx.Err()
		}
	}
}

// Reload re-reads the directory now and reports whether the token changed. The
// watch does this on its own; Reload is for callers that have a reason to believe
// the token moved (say, a 401 from the server).
func (s *Source) Reload() bool {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	t, err := readDir(s.dir)
	if err != nil {
		s.lastErr.Store(&err)
		if s.opts.OnError != nil {
			s.opts.OnError(err)
		}
		return false
	}
	s.lastErr.Store(nil)
	old := s.cur.Load()
	if old != nil && old.Value == t.Value {
		return false
	}
	t.ReadAt = s.opts.Clock.Now()
	s.cur.Store(t)
	next := make(chan struct{})
	close(*s.changed.Swap(&next))
	if s.opts.OnChange != nil {
		s.opts.OnChange(t)
	}
	return true
}

// run reloads on file-system events and on the resync timer. Events are coalesced
// through kick: a burst of events from one kubelet update costs one or two reads.
func (s *Source) run(ctx context.Context) {
	defer close(s.done)
	var tick <-chan time.Time
	if s.opts.ResyncInterval > 0 {
		t := s.opts.Clock.NewTicker(s.opts.ResyncInterval)
		defer t.Stop()
		tick = t.C()
	}
	go func() {
		for {
			select {
			case _, ok := <-s.watcher.Events:
				if !ok {
					return
				}
				select {
				case s.kick <- struct{}{}:
				default:
				}
			case err, ok := <-s.watcher.Errors:
				if !ok {
					return
				}
				// An overflowed queue lost events: read now rather than wait for the timer.
				if s.opts.OnError != nil {
					s.opts.OnError(fmt.Errorf("tokensource: watching %s: %w", s.dir, err))
				}
				select {
				case s.kick <- struct{}{}:
				default:
				}
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
		case <-tick:
		}
		s.Reload()
	}
}

// readDir reads one consistent token from dir. With the kubelet's layout it reads
// from the timestamped directory ..data points to and checks afterwards that ..data
// still points there; otherwise it reads the files as they are and relies on the
// consistency checks of complete.
func readDir(dir string) (*Token, error) {
	for attempt := 0; attempt < 5; attempt++ {
		link, err := os.Readlink(filepath.Join(dir, dataDir))
		if errors.Is(err, fs.ErrNotExist) {
			return readFiles(dir)
		}
		if err != nil {
			return nil, fmt.Errorf("tokensource: reading %s: %w", dataDir, err)
		}
		target := link
		if !filepath.IsAbs(target) {
			target = filepath.Join(dir, target)
		}
		t, err := readFiles(target)
		// A swap during the read may have removed the directory under us or mixed
		// nothing at all; either way the newer directory is the one to read.
		if again, lerr := os.Readlink(filepath.Join(dir, dataDir)); lerr == nil && again != link {
			continue
		}
		if err != nil {
			return nil, err
		}
		return t, nil
	}
	return nil, fmt.Errorf("tokensource: %s kept changing while it was read", dir)
}

// readFiles reads the token files of one directory and checks they are complete.
func readFiles(dir string) (*Token, error) {
	value, err := os.ReadFile(filepath.Join(dir, KeyToken))
	if err != nil {
		return nil, err
	}
	t := &Token{Value: string(bytes.TrimSpace(value))}
	if id, err := os.ReadFile(filepath.Join(dir, KeyTokenID)); err == nil {
		t.ID = string(bytes.TrimSpace(id))
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if exp, err := os.ReadFile(filepath.Join(dir, KeyExpiresAt)); err == nil {
		if s := string(bytes.TrimSpace(exp)); s != "" {
			if t.ExpiresAt, err = time.Parse(time.RFC3339, s); err != nil {
				return nil, fmt.Errorf("tokensource: %s is not an RFC 3339 time", KeyExpiresAt)
			}
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if err := complete(t); err != nil {
		return nil, err
	}
	return t, nil
}

// complete refuses what cannot be a whole token: an empty file, one cut short (an
// opaque token's checksum fails, a JWT's segments do not decode) or a token that does
// not carry the ID written next to it. It fills ID from the token when the file is
// absent. Errors name the check, never the token.
func complete(t *Token) error {
	if t.Value == "" {
		return errors.New("tokensource: the token file is empty")
	}
	if strings.ContainsAny(t.Value, " \t\r\n") {
		return errors.New("tokensource: the token file holds more than one token")
	}
	var id string
	if token.LooksLikeJWT(t.Value) {
		jti, err := jwtID(t.Value)
		if err != nil {
			return err
		}
		id = jti
	} else {
		_, oid, err := token.ParseOpaque(t.Value)
		if err != nil {
			return fmt.Errorf("tokensource: the token is neither a JWT nor a complete opaque token (%s)", token.ReasonOf(err))
		}
		id = oid
	}
	switch {
	case t.ID == "":
		t.ID = id
	case id != "" && id != t.ID:
		return fmt.Errorf("tokensource: the token does not carry the ID in %s (%s)", KeyTokenID, t.ID)
	}
	return nil
}

// jwtID decodes the jti of a JWT without verifying it: enough to tell a whole token
// from a torn one, which is all a client needs; the server verifies.
func jwtID(tok string) (string, error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 || parts[2] == "" {
		return "", errors.New("tokensource: the JWT is incomplete")
	}
	for _, p := range []string{parts[0], parts[2]} {
		if _, err := base64.RawURLEncoding.DecodeString(p); err != nil {
			return "", errors.New("tokensource: the JWT is incomplete")
		}
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", errors.New("tokensource: the JWT is incomplete")
	}
	var c struct {
		ID string `json:"jti"`
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		return "", errors.New("tokensource: the JWT is incomplete")
	}
	return c.ID, nil
}
