package redistier

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"dedupcache/internal/redistest"
)

// server is a redis-server process started by a test on a free loopback
// port, with persistence off and a private directory. It is stopped by
// t.Cleanup; its log is printed when the test failed.
type server struct {
	tb   testing.TB
	bin  string
	dir  string
	port int
	args []string
	cmd  *exec.Cmd
	done chan struct{}
}

// startServer starts a redis-server with extra config arguments.
func startServer(tb testing.TB, extra ...string) *server {
	tb.Helper()
	s := &server{tb: tb, bin: redistest.Binary(tb), dir: tb.TempDir(), args: extra}
	for attempt := 0; ; attempt++ {
		s.port = redistest.FreePort(tb)
		err := s.start()
		if err == nil {
			break
		}
		if attempt == 4 {
			tb.Fatalf("redis-server: %v\n%s", err, s.log())
		}
	}
	tb.Cleanup(func() {
		s.stop()
		if tb.Failed() {
			tb.Logf("redis-server log:\n%s", s.log())
		}
	})
	return s
}

// start runs the server on s.port and waits (at most 5 s) until it answers
// PING.
func (s *server) start() error {
	args := []string{
		"--bind", "127.0.0.1", "--port", strconv.Itoa(s.port), "--protected-mode", "yes",
		"--save", "", "--appendonly", "no", "--dir", s.dir,
		"--logfile", filepath.Join(s.dir, "redis.log"), "--loglevel", "warning",
		"--daemonize", "no",
	}
	args = append(args, s.args...)
	s.cmd = exec.Command(s.bin, args...)
	if err := s.cmd.Start(); err != nil {
		return err
	}
	s.done = make(chan struct{})
	go func(c *exec.Cmd, done chan struct{}) { c.Wait(); close(done) }(s.cmd, s.done)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			return fmt.Errorf("exited at start")
		default:
		}
		if _, err := s.do("PING"); err == nil {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.stop()
	return fmt.Errorf("no PING answer within 5s")
}

// stop ends the server: SIGTERM, then SIGKILL after 5 s.
func (s *server) stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd = nil
}

// kill ends the server at once (SIGKILL), as a crash would.
func (s *server) kill() {
	s.cmd.Process.Kill()
	<-s.done
	s.cmd = nil
}

// restart starts the server again on the same port, empty.
func (s *server) restart() {
	s.tb.Helper()
	if err := s.start(); err != nil {
		s.tb.Fatalf("restart: %v\n%s", err, s.log())
	}
}

func (s *server) addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }
func (s *server) url() string  { return "redis://" + s.addr() }

func (s *server) log() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
	return string(b)
}

// do sends one command (redistest.Do) and returns the reply as one string,
// arrays joined by newlines.
func (s *server) do(args ...string) (string, error) {
	out, err := redistest.Do(s.addr(), args...)
	return strings.Join(out, "\n"), err
}

// mustDo is do that fails the test on an error.
func (s *server) mustDo(args ...string) string {
	s.tb.Helper()
	r, err := s.do(args...)
	if err != nil {
		s.tb.Fatalf("%v: %v", args, err)
	}
	return r
}
