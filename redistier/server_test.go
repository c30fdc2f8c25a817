package redistier

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
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

// redisBinary returns the redis-server to run: $REDIS_SERVER, else the one
// on PATH. Without one the test is skipped, unless CI is set: then it fails.
func redisBinary(tb testing.TB) string {
	tb.Helper()
	if p := os.Getenv("REDIS_SERVER"); p != "" {
		return p
	}
	p, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatalf("redis-server not found and CI is set: install Debian's redis-server (.ci/run does)")
		}
		tb.Skip("redis-server not found: install Debian's redis-server (apt-get install redis-server) to run this test")
	}
	return p
}

// startServer starts a redis-server with extra config arguments.
func startServer(tb testing.TB, extra ...string) *server {
	tb.Helper()
	s := &server{tb: tb, bin: redisBinary(tb), dir: tb.TempDir(), args: extra}
	for attempt := 0; ; attempt++ {
		s.port = freePort(tb)
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

func freePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
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

// do sends one command over a fresh connection with RESP2 and returns the
// reply flattened to a string (arrays joined by newlines), so that tests
// check the server with no client library in between.
func (s *server) do(args ...string) (string, error) {
	c, err := net.DialTimeout("tcp", s.addr(), time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	var b bytes.Buffer
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.Write(b.Bytes()); err != nil {
		return "", err
	}
	var out []string
	if err := readReply(bufio.NewReader(c), &out); err != nil {
		return "", err
	}
	return strings.Join(out, "\n"), nil
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

func readReply(r *bufio.Reader, out *[]string) error {
	line, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return fmt.Errorf("empty reply line")
	}
	switch line[0] {
	case '+', ':':
		*out = append(*out, line[1:])
	case '-':
		return fmt.Errorf("redis: %s", line[1:])
	case '$':
		n, _ := strconv.Atoi(line[1:])
		if n < 0 {
			*out = append(*out, "(nil)")
			return nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return err
		}
		*out = append(*out, string(buf[:n]))
	case '*':
		n, _ := strconv.Atoi(line[1:])
		for range n {
			if err := readReply(r, out); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("unexpected reply %q", line)
	}
	return nil
}
