package localenv

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/apitoken-operator/apitoken-operator/internal/testenv"
)

// Process is a child process (the manager or the validator) with its output in a log
// file. It runs in a process group of its own, so that signalling it reaches whatever
// it started too, and it gets SIGTERM if its parent dies.
type Process struct {
	// Name names the process in errors and logs.
	Name string
	// LogPath is the file its stdout and stderr go to.
	LogPath string

	cmd  *exec.Cmd
	done chan struct{}
	mu   sync.Mutex
	err  error
}

// StartProcess starts bin with args, KUBECONFIG set to kubeconfig, and its output
// appended to logPath.
func StartProcess(name, bin, kubeconfig, logPath string, args ...string) (*Process, error) {
	return StartProcessWithEnv(name, bin, kubeconfig, logPath, nil, args...)
}

// StartProcessWithEnv is StartProcess with env (NAME=value entries) added to the
// process's environment, after this process's own.
func StartProcessWithEnv(name, bin, kubeconfig, logPath string, env []string, args ...string) (*Process, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(append(os.Environ(), "KUBECONFIG="+kubeconfig), env...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("starting %s (%s): %w", name, bin, err)
	}
	p := &Process{Name: name, LogPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		_ = logFile.Close()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// Pid is the process's ID.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed once the process exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the process exited, and how (nil: with status 0).
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		p.mu.Lock()
		defer p.mu.Unlock()
		return true, p.err
	default:
		return false, nil
	}
}

// Signal sends sig to the process's group.
func (p *Process) Signal(sig syscall.Signal) error {
	if exited, _ := p.Exited(); exited {
		return nil
	}
	if err := syscall.Kill(-p.cmd.Process.Pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signalling %s: %w", p.Name, err)
	}
	return nil
}

// Kill kills the process with SIGKILL, as a crash or an OOM kill would, and waits
// until it is gone.
func (p *Process) Kill() error {
	if err := p.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	<-p.done
	return nil
}

// Stop asks the process to stop with SIGTERM and kills it if it has not stopped
// within grace.
func (p *Process) Stop(grace time.Duration) error {
	if err := p.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
	}
	return p.Kill()
}

// FreePort returns a TCP port on 127.0.0.1 that nothing listened on a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Bins are the paths of the system's binaries.
type Bins struct {
	Manager, Validator, Exchange string
}

// Binaries builds the manager, the validator and the exchange into dir with `go
// build`, with the race detector when race is set, and returns their paths.
func Binaries(dir string, race bool) (Bins, error) {
	args := []string{"build", "-o", dir + string(filepath.Separator)}
	if race {
		args = append(args, "-race")
	}
	args = append(args, "./cmd/manager", "./cmd/validator", "./cmd/exchange")
	cmd := exec.Command("go", args...)
	cmd.Dir = testenv.RepoRoot()
	cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local")
	if out, err := cmd.CombinedOutput(); err != nil {
		return Bins{}, fmt.Errorf("go build: %w\n%s", err, out)
	}
	return Bins{Manager: filepath.Join(dir, "manager"), Validator: filepath.Join(dir, "validator"), Exchange: filepath.Join(dir, "exchange")}, nil
}
