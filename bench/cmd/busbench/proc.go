package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is a child process of the orchestrator, driven through lines on its
// standard input and output.
type proc struct {
	name   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string
	stderr *syncBuffer
	waited chan struct{}
	state  *os.ProcessState
}

// spawn starts this executable again as "busbench role=<role> args...".
func spawn(ctx context.Context, verbose bool, role string, args ...string) (*proc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, exe, append([]string{"role=" + role}, args...)...)
	// A child never outlives the orchestrator.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p := &proc{name: role, cmd: cmd, lines: make(chan string, 16), stderr: &syncBuffer{}, waited: make(chan struct{})}
	if verbose {
		cmd.Stderr = io.MultiWriter(p.stderr, prefixWriter{prefix: "[" + role + "] ", w: os.Stderr})
	} else {
		cmd.Stderr = p.stderr
	}
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
		_ = cmd.Wait()
		p.state = cmd.ProcessState
		close(p.waited)
	}()
	return p, nil
}

// expect waits for a line starting with prefix and returns the rest of it.
func (p *proc) expect(prefix string, timeout time.Duration) (string, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case line, ok := <-p.lines:
			if !ok {
				return "", fmt.Errorf("%s exited while we waited for %q: %s", p.name, prefix, p.stderrTail())
			}
			if rest, ok := strings.CutPrefix(line, prefix); ok {
				return strings.TrimSpace(rest), nil
			}
			if strings.HasPrefix(line, "error ") {
				return "", fmt.Errorf("%s: %s", p.name, line)
			}
		case <-t.C:
			return "", fmt.Errorf("%s: no %q within %v: %s", p.name, prefix, timeout, p.stderrTail())
		}
	}
}

func (p *proc) send(line string) error {
	_, err := io.WriteString(p.stdin, line+"\n")
	return err
}

// mark asks the process for its resource counters.
func (p *proc) mark(gc bool) (mark, error) {
	var m mark
	cmd := "mark"
	if gc {
		cmd = "mark gc"
	}
	if err := p.send(cmd); err != nil {
		return m, err
	}
	s, err := p.expect("mark ", 30*time.Second)
	if err != nil {
		return m, err
	}
	return m, json.Unmarshal([]byte(s), &m)
}

// stop closes the standard input (the process then shuts down) and waits for
// it to exit, killing it after timeout.
func (p *proc) stop(timeout time.Duration) error {
	_ = p.stdin.Close()
	select {
	case <-p.waited:
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		<-p.waited
		return fmt.Errorf("%s did not exit within %v, killed", p.name, timeout)
	}
	if p.state != nil && !p.state.Success() {
		return fmt.Errorf("%s: %v: %s", p.name, p.state, p.stderrTail())
	}
	return nil
}

// kill ends the process at once (error paths).
func (p *proc) kill() {
	_ = p.stdin.Close()
	_ = p.cmd.Process.Kill()
	<-p.waited
}

// cpu is the process's whole-life CPU time, known once it has exited.
func (p *proc) cpu() time.Duration {
	if p.state == nil {
		return 0
	}
	return p.state.UserTime() + p.state.SystemTime()
}

func (p *proc) stderrTail() string {
	s := strings.TrimSpace(p.stderr.String())
	if len(s) > 2000 {
		s = "..." + s[len(s)-2000:]
	}
	if s == "" {
		return "(no stderr)"
	}
	return s
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type prefixWriter struct {
	prefix string
	w      io.Writer
}

func (p prefixWriter) Write(b []byte) (int, error) {
	for _, line := range strings.SplitAfter(string(b), "\n") {
		if line != "" {
			fmt.Fprint(p.w, p.prefix+line)
		}
	}
	return len(b), nil
}

// group is the child processes of one cell of the pubsub and scale
// suites. kill ends those still running (deferred: no child outlives its
// cell, whatever failed).
type group struct {
	ctx     context.Context
	verbose bool
	procs   []*proc
}

// start spawns role and waits for its ready line, whose key=value fields
// it returns.
func (g *group) start(role string, timeout time.Duration, args ...string) (*proc, map[string]string, error) {
	p, err := spawn(g.ctx, g.verbose, role, args...)
	if err != nil {
		return nil, nil, err
	}
	g.procs = append(g.procs, p)
	line, err := p.expect("ready", timeout)
	if err != nil {
		return nil, nil, err
	}
	return p, parseKV(line), nil
}

// stop stops ps in order (see proc.stop).
func (g *group) stop(ps ...*proc) error {
	for _, p := range ps {
		if err := p.stop(time.Minute); err != nil {
			return err
		}
	}
	return nil
}

func (g *group) kill() {
	for _, p := range g.procs {
		select {
		case <-p.waited:
		default:
			p.kill()
		}
	}
}

// sigkill ends the process with SIGKILL, as a crash would, and waits for
// it to be gone.
func (p *proc) sigkill() {
	_ = p.cmd.Process.Kill()
	<-p.waited
	_ = p.stdin.Close()
}

// command sends line and returns the rest of the answer line starting
// with prefix.
func (p *proc) command(line, prefix string, timeout time.Duration) (string, error) {
	if err := p.send(line); err != nil {
		return "", err
	}
	return p.expect(prefix, timeout)
}
