package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"dedupcache/config"
)

// writePair writes a self-signed certificate for 127.0.0.1 named cn and
// its key into dir as cn.pem and cn-key.pem.
func writePair(t *testing.T, dir, cn string) (certFile, keyFile string, cert *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	if cert, err = x509.ParseCertificate(der); err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, cn+".pem"), filepath.Join(dir, cn+"-key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, cert
}

// TestTLSProxy checks the TLS server main builds: HTTP/2 and HTTP/1.1 by
// ALPN, the limits of the plain server, and reload swapping the
// certificate for new connections or keeping it when the files are bad.
func TestTLSProxy(t *testing.T) {
	dir := t.TempDir()
	certA, keyA, a := writePair(t, dir, "a")
	certB, keyB, b := writePair(t, dir, "b")
	cfg := config.Default()
	cfg.ListenTLS, cfg.TLSCert, cfg.TLSKey = "127.0.0.1:0", certA, keyA
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))

	tp, err := newTLSProxy(cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	s := tp.server(cfg.Server, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Proto)
	}), nil, logger)
	srv, ok := any(s.srv).(*http.Server) // any: named.srv need not stay a *http.Server
	if !ok {
		t.Fatalf("server is a %T; want *http.Server", s.srv)
	}
	if want := newServer(cfg.Server, nil, logger); srv.ReadHeaderTimeout != want.ReadHeaderTimeout ||
		srv.IdleTimeout != want.IdleTimeout || srv.MaxHeaderBytes != want.MaxHeaderBytes || srv.ErrorLog == nil {
		t.Errorf("server limits differ from newServer's")
	}
	served := make(chan error, 1)
	go func() { served <- s.srv.Serve(s.ln) }()
	t.Cleanup(func() {
		s.srv.Shutdown(context.Background())
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})

	pool := x509.NewCertPool()
	pool.AddCert(a)
	pool.AddCert(b)
	get := func(h2 bool) (proto, cn string) {
		t.Helper()
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: h2, DisableKeepAlives: true}
		if !h2 {
			tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
		}
		resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("https://" + s.ln.Addr().String() + "/")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if string(body) != resp.Proto {
			t.Errorf("handler saw %q; client %q", body, resp.Proto)
		}
		return resp.Proto, resp.TLS.PeerCertificates[0].Subject.CommonName
	}

	if proto, cn := get(true); proto != "HTTP/2.0" || cn != "a" {
		t.Errorf("HTTP/2 client: %s, certificate %q; want HTTP/2.0, a", proto, cn)
	}
	if proto, cn := get(false); proto != "HTTP/1.1" || cn != "a" {
		t.Errorf("HTTP/1.1 client: %s, certificate %q; want HTTP/1.1, a", proto, cn)
	}

	tp.reload(certB, keyA) // not a pair
	if !strings.Contains(logs.String(), "TLS certificate not reloaded") || !strings.Contains(logs.String(), "tls_key:") {
		t.Errorf("a bad pair on reload was not logged:\n%s", logs.String())
	}
	if _, cn := get(true); cn != "a" {
		t.Errorf("after a failed reload: certificate %q; want a (kept)", cn)
	}
	tp.reload("", "") // listen_tls removed: needs a restart, changes nothing
	if _, cn := get(true); cn != "a" {
		t.Errorf("after a reload without tls_cert: certificate %q; want a (kept)", cn)
	}
	tp.reload(certB, keyB)
	if _, cn := get(true); cn != "b" {
		t.Errorf("after reload: certificate %q; want b", cn)
	}
}
