package proxy

import (
	"context"
	"net"
	"time"
)

// idleConn is an upstream connection whose reads fail after a silence of
// timeout: an upstream that sends a header and then stalls mid-body cannot
// hold a fetch (and the clients reading it) forever. The deadline is
// pushed forward before each read; an idle pooled connection times out too
// and is simply redialled.
type idleConn struct {
	net.Conn
	timeout time.Duration
}

func (c *idleConn) Read(b []byte) (int, error) {
	if err := c.Conn.SetReadDeadline(time.Now().Add(c.timeout)); err != nil {
		return 0, err
	}
	return c.Conn.Read(b)
}

// dialIdle wraps dial so that its connections are idleConns.
func dialIdle(dial func(ctx context.Context, network, addr string) (net.Conn, error), timeout time.Duration) func(ctx context.Context, network, addr string) (net.Conn, error) {
	if timeout <= 0 {
		return dial
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &idleConn{Conn: c, timeout: timeout}, nil
	}
}
