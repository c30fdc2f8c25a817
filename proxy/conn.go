package proxy

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// upConn is an upstream connection with the cache's read timeouts, for
// both upstream clients (the fetch engine's fasthttp HostClient and
// net/http's Transport for requests sent straight upstream):
//
//   - After a request is written, the whole response header must arrive
//     within header (upstream_timeouts.response_header), however it
//     trickles in: the connection watches the bytes it reads for the end
//     of the header block.
//   - After the header, every silence is bounded by idle
//     (upstream_timeouts.read): an upstream that stalls mid-body cannot
//     hold a fetch and its readers forever. An idle pooled connection times
//     out too and is simply redialled.
//   - Before a request is written on a reused plain-TCP connection, it
//     checks that the upstream has sent nothing since the last response:
//     bytes there are not an answer to anything (RFC 9112 §6.3) and would
//     be read as the next response, another key's (errUnsolicited; the
//     connection is closed and the request retried on a new one).
//
// The client's own read deadlines are ignored. net/http's Transport reads
// (its idle peek included) on one goroutine while it writes on another.
type upConn struct {
	net.Conn
	u            *upstreamClient // nil for net/http's connections
	header, idle time.Duration
	peek         bool // check for unsolicited bytes before each reuse

	used       bool         // a request was written before (writer's)
	inHeader   atomic.Bool  // a request was written and its header is not all in
	headerEnd  atomic.Int64 // when the header must be in (unix nanoseconds)
	gen        atomic.Uint32
	readGen    uint32 // gen the reader's tail belongs to (reader's)
	tail       uint32 // the last bytes read in the header phase, to find "\r\n\r\n" (reader's)
	closeOnce  sync.Once
	closeError error
}

// errUnsolicited reports bytes an upstream sent on an idle connection.
var errUnsolicited = errors.New("proxy: the upstream sent data on an idle connection")

func (c *upConn) Write(b []byte) (int, error) {
	if !c.inHeader.Load() {
		if c.used && c.peek && c.unsolicited() {
			_ = c.Close()
			return 0, errUnsolicited
		}
		c.used = true
		if c.header > 0 {
			end := time.Now().Add(c.header)
			c.headerEnd.Store(end.UnixNano())
			c.gen.Add(1)
			c.inHeader.Store(true)
			// A read already waiting (net/http's idle peek) gets the
			// header's deadline, not the idle one.
			_ = c.Conn.SetReadDeadline(end)
		}
	}
	return c.Conn.Write(b)
}

func (c *upConn) Read(b []byte) (int, error) {
	for {
		in := c.inHeader.Load()
		var d time.Time
		switch {
		case in:
			d = time.Unix(0, c.headerEnd.Load())
		case c.idle > 0:
			d = time.Now().Add(c.idle)
		}
		if err := c.Conn.SetReadDeadline(d); err != nil {
			return 0, err
		}
		if c.inHeader.Load() == in {
			break // else a request was written meanwhile: its deadline
		}
	}
	n, err := c.Conn.Read(b)
	if n > 0 && c.inHeader.Load() {
		if g := c.gen.Load(); g != c.readGen {
			c.readGen, c.tail = g, 0
		}
		for _, x := range b[:n] {
			c.tail = c.tail<<8 | uint32(x)
			if c.tail == '\r'<<24|'\n'<<16|'\r'<<8|'\n' {
				// The end of a header block: the response's, or an
				// interim 1xx one's (then the next header follows within
				// the read timeout).
				c.inHeader.Store(false)
				break
			}
		}
	}
	return n, err
}

// unsolicited reports whether the upstream has sent bytes (or closed the
// connection) since the last response: a non-blocking peek at the socket.
func (c *upConn) unsolicited() bool {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var buf [1]byte
	pending := false
	_ = raw.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		pending = n > 0 || (n == 0 && err == nil) // data, or the peer closed
		return true                               // never wait
	})
	return pending
}

// SetReadDeadline is ignored: the connection sets its own (see upConn).
func (c *upConn) SetReadDeadline(time.Time) error { return nil }

func (c *upConn) Close() error {
	c.closeOnce.Do(func() {
		if c.u != nil {
			c.u.mu.Lock()
			delete(c.u.conns, c)
			c.u.mu.Unlock()
		}
		c.closeError = c.Conn.Close()
	})
	return c.closeError
}

// dialIdle wraps dial so that its connections are upConns (net/http's
// Transport, for requests sent straight upstream; it keeps its own
// ResponseHeaderTimeout too).
func dialIdle(dial func(ctx context.Context, network, addr string) (net.Conn, error), header, idle time.Duration) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &upConn{Conn: c, header: header, idle: idle}, nil
	}
}
