package proxy

import (
	"net"
	"net/http"

	"github.com/valyala/fasthttp"
)

// Client connections and the memory limit. Every open client connection
// holds buffers on the Go heap that no entry is charged for: fasthttp
// keeps a connection's read buffer (server.max_header_bytes, 64 KiB by
// default), its write buffer and its request context for as long as the
// connection lives; net/http its bufio reader and writer and the
// connection's state. The runtime's memory limit (Config.GoMemoryLimit)
// is raised by their estimated size while they are open, so that many
// connections leave the collector the headroom a few do: without it, 256
// keep-alive connections (16 MiB of read buffers) left a 256 MiB cache's
// heap ~12 MB between collections, and it collected four times a second.

// fastConnOverhead is a fasthttp connection's memory besides its read
// buffer: the write buffer (4 KiB) and the request context with its
// request and response (measured ~5 KiB), rounded up.
const fastConnOverhead = 12 << 10

// netHTTPConnBytes is a net/http connection's estimated memory: the
// server's 4 KiB bufio reader and writer, the conn and its goroutine's
// stack, rounded up.
const netHTTPConnBytes = 24 << 10

// fastConnState returns the fasthttp ConnState hook that counts the
// listener's connections, each as readBuf bytes of read buffer plus
// fastConnOverhead.
func (p *Proxy) fastConnState(readBuf int) func(net.Conn, fasthttp.ConnState) {
	cost := int64(readBuf) + fastConnOverhead
	return func(_ net.Conn, st fasthttp.ConnState) {
		switch st {
		case fasthttp.StateNew:
			p.countConn(1, cost)
		case fasthttp.StateClosed, fasthttp.StateHijacked:
			p.countConn(-1, cost)
		}
	}
}

// countConn counts a client connection opened (n = 1) or gone (n = -1)
// that holds cost bytes of buffers.
func (p *Proxy) countConn(n int64, cost int64) {
	p.clientConns.Add(n)
	p.connBytes.Add(n * cost)
}

// ConnState is an http.Server ConnState hook for the proxy's net/http
// listeners (the net/http engine, the TLS listener): it counts their
// connections toward the memory limit as fastConnState does.
func (p *Proxy) ConnState(_ net.Conn, st http.ConnState) {
	switch st {
	case http.StateNew:
		p.countConn(1, netHTTPConnBytes)
	case http.StateClosed, http.StateHijacked:
		p.countConn(-1, netHTTPConnBytes)
	}
}
