package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"dedupcache/config"
)

// tlsProxy is the optional TLS listener in front of the proxy (listen_tls),
// serving HTTP/2 and HTTP/1.1, and the certificate it presents, which a
// reload replaces for new connections.
type tlsProxy struct {
	ln     net.Listener // the TCP listener; server wraps it in TLS
	cert   atomic.Pointer[tls.Certificate]
	logger *slog.Logger
}

// newTLSProxy loads the key pair and binds listen_tls. It returns nil,
// nil when listen_tls is empty. The caller closes t.ln if it does not go on
// to serve it.
func newTLSProxy(cfg config.Config, logger *slog.Logger) (*tlsProxy, error) {
	if cfg.ListenTLS == "" {
		return nil, nil
	}
	pair, err := config.LoadKeyPair(cfg.TLSCert, cfg.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("TLS proxy: %w", err)
	}
	ln, err := net.Listen("tcp", cfg.ListenTLS)
	if err != nil {
		return nil, fmt.Errorf("TLS proxy listener: %w", err)
	}
	t := &tlsProxy{ln: ln, logger: logger}
	t.store(&pair, cfg.TLSCert)
	return t, nil
}

// server returns the server for h on t's listener, with the same limits as
// the plain proxy listener (newServer) and its ConnState hook connState
// (which counts connections toward the memory limit). HTTP/2 is offered
// first by ALPN.
func (t *tlsProxy) server(c config.Server, h http.Handler, connState func(net.Conn, http.ConnState), logger *slog.Logger) *named {
	srv := newServer(c, h, logger)
	srv.ConnState = connState
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetHTTP2(true)
	// Serve sets up HTTP/2 for a TLS listener when TLSConfig names h2.
	srv.TLSConfig = &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"h2", "http/1.1"},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return t.cert.Load(), nil },
	}
	return &named{"proxy_tls", srv, tls.NewListener(t.ln, srv.TLSConfig)}
}

// reload re-reads the key pair, for reload on SIGHUP: connections made
// afterwards see the new certificate. On error the old one stays and the
// error is logged. Empty names (listen_tls removed from the file, which
// needs a restart) change nothing.
func (t *tlsProxy) reload(certFile, keyFile string) {
	if certFile == "" || keyFile == "" {
		return
	}
	pair, err := config.LoadKeyPair(certFile, keyFile)
	if err != nil {
		t.logger.Error("TLS certificate not reloaded; keeping the one in use", "err", err)
		return
	}
	t.store(&pair, certFile)
}

// store makes pair the certificate served and logs it.
func (t *tlsProxy) store(pair *tls.Certificate, certFile string) {
	t.cert.Store(pair)
	if leaf := pair.Leaf; leaf != nil {
		level := slog.LevelInfo
		if time.Now().After(leaf.NotAfter) {
			level = slog.LevelWarn
		}
		t.logger.Log(context.Background(), level, "TLS certificate loaded", "file", certFile, "subject", leaf.Subject.String(),
			"not_after", leaf.NotAfter.UTC().Format(time.RFC3339), "expired", time.Now().After(leaf.NotAfter))
	}
}
