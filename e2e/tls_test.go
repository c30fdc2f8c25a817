package e2e

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// testCert is a self-signed certificate for 127.0.0.1 and its key, as PEM.
type testCert struct {
	cert       *x509.Certificate
	certPEM    []byte
	keyPEM     []byte
	commonName string
}

// newTestCert makes a self-signed ECDSA P-256 certificate for 127.0.0.1
// named cn.
func newTestCert(t *testing.T, cn string) testCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return testCert{
		cert:       cert,
		certPEM:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:     pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		commonName: cn,
	}
}

// write writes the certificate and key to cert.pem and key.pem in dir,
// replacing what was there, and returns their paths.
func (c testCert) write(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	for _, f := range []struct {
		path string
		data []byte
	}{{certFile, c.certPEM}, {keyFile, c.keyPEM}} {
		// Write and rename, as certificate renewal tools do, so a reload
		// never reads half a file.
		tmp := f.path + ".tmp"
		if err := os.WriteFile(tmp, f.data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, f.path); err != nil {
			t.Fatal(err)
		}
	}
	return certFile, keyFile
}

// tlsClient returns a client trusting exactly certs that offers HTTP/2
// (ALPN h2, http/1.1), or only HTTP/1.1 with h1only. Keep-alives are off,
// so every request makes a new connection and handshake.
func tlsClient(h1only bool, certs ...*x509.Certificate) *http.Client {
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: pool},
		ForceAttemptHTTP2: true, // a custom TLSClientConfig turns HTTP/2 off otherwise
		DisableKeepAlives: true,
	}
	if h1only {
		tr.ForceAttemptHTTP2 = false
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	return &http.Client{Timeout: reqTimeout, Transport: tr}
}

// tlsResult is one response over TLS, read in full.
type tlsResult struct {
	proto  string
	header http.Header
	body   []byte
	peerCN string // the server certificate's common name
}

func tlsGet(t *testing.T, c *http.Client, url string) tlsResult {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading the body: %v", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: got status %d; want 200 (body %.200q)", url, resp.StatusCode, body)
	}
	r := tlsResult{proto: resp.Proto, header: resp.Header, body: body}
	if resp.TLS != nil && len(resp.TLS.PeerCertificates) > 0 {
		r.peerCN = resp.TLS.PeerCertificates[0].Subject.CommonName
	}
	return r
}

var tlsListening = regexp.MustCompile(`msg=listening .*proxy_tls=(\S+)`)

// tlsURL waits for the "listening" log line and returns https:// and the
// address it gives for proxy_tls.
func tlsURL(t *testing.T, c *cache) string {
	t.Helper()
	deadline := time.Now().Add(startTimeout)
	for {
		if m := tlsListening.FindStringSubmatch(c.stderr.String()); m != nil {
			return "https://" + m[1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no proxy_tls address in the listening line:\n%s", c.stderr.String())
		}
		time.Sleep(pollEvery)
	}
}

// startTLSCache starts an origin and a cache with listen_tls on an
// ephemeral loopback port serving cert, and returns them with the TLS URL
// and the directory holding cert.pem and key.pem.
func startTLSCache(t *testing.T, cert testCert) (o *origin, c *cache, url, dir string) {
	t.Helper()
	o = startOrigin(t)
	dir = t.TempDir()
	certFile, keyFile := cert.write(t, dir)
	cfg := writeFile(t, "tls.yaml", "listen_tls: \"127.0.0.1:0\"\ntls_cert: "+certFile+"\ntls_key: "+keyFile+"\n")
	c = startCache(t, cacheOptions{upstream: o.url, args: []string{"-config", cfg}})
	return o, c, tlsURL(t, c), dir
}

// TestTLSListener checks listen_tls: HTTP/2 is negotiated, the cache
// answers MISS then HIT with the origin's bytes, an HTTP/1.1-only client is
// served too, the origin is told the client used https, and the plain
// listener shares the same cache.
func TestTLSListener(t *testing.T) {
	t.Parallel()
	cert := newTestCert(t, "dedupcache e2e")
	o, c, url, _ := startTLSCache(t, cert)
	h2, h1 := tlsClient(false, cert.cert), tlsClient(true, cert.cert)

	path := "/obj/3?distinct=100&size=70000" // more than one HTTP/2 frame
	want := get(t, o.url+path).body
	for i, wantCache := range []string{"MISS", "HIT"} {
		r := tlsGet(t, h2, url+path)
		if r.proto != "HTTP/2.0" {
			t.Errorf("GET %d: proto %q; want HTTP/2.0", i+1, r.proto)
		}
		if got := r.header.Get("X-Cache"); got != wantCache {
			t.Errorf("GET %d: X-Cache %q; want %q", i+1, got, wantCache)
		}
		if cs := r.header.Get("Cache-Status"); !strings.HasPrefix(cs, "dedupcache") {
			t.Errorf("GET %d: Cache-Status %q; want dedupcache;...", i+1, cs)
		}
		if !bytes.Equal(r.body, want) {
			t.Errorf("GET %d: body of %d bytes differs from the origin's %d", i+1, len(r.body), len(want))
		}
		if r.peerCN != cert.commonName {
			t.Errorf("GET %d: server certificate %q; want %q", i+1, r.peerCN, cert.commonName)
		}
	}

	r := tlsGet(t, h1, url+path)
	if r.proto != "HTTP/1.1" {
		t.Errorf("HTTP/1.1-only client: proto %q; want HTTP/1.1", r.proto)
	}
	if got := r.header.Get("X-Cache"); got != "HIT" {
		t.Errorf("HTTP/1.1-only client: X-Cache %q; want HIT", got)
	}
	if !bytes.Equal(r.body, want) {
		t.Errorf("HTTP/1.1-only client: body of %d bytes differs from the origin's %d", len(r.body), len(want))
	}

	// The same cache behind both listeners, the scheme keyed (the origin
	// sees it in X-Forwarded-Proto): the plain listener's request for the
	// same Host and target is a miss of its own, then a hit.
	for i, wantCache := range []string{"MISS", "HIT"} {
		req, err := http.NewRequest(http.MethodGet, c.url+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = strings.TrimPrefix(url, "https://")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.Header.Get("X-Cache") != wantCache || !bytes.Equal(body, want) {
			t.Errorf("plain listener, TLS listener's Host, GET %d: X-Cache %q, %d bytes, %v; want %s and the origin's %d",
				i+1, resp.Header.Get("X-Cache"), len(body), err, wantCache, len(want))
		}
	}
	if n := o.stats(t).Path["/obj/3"]; n != 3 { // this test's direct GET and one MISS per scheme
		t.Errorf("origin saw /obj/3 %d times; want 3", n)
	}

	// The origin learns the client's scheme.
	script := `{"headers":{"Cache-Control":["no-store"]},"body":"proto=","echo_header":"X-Forwarded-Proto"}`
	resp, err := client.Post(o.url+"/script-set/tls-proto", "application/json", strings.NewReader(script))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("script-set: %s", resp.Status)
	}
	if got := string(tlsGet(t, h2, url+"/script/tls-proto").body); got != "proto=https" {
		t.Errorf("origin saw %q over TLS; want proto=https", got)
	}
	if got := string(get(t, c.url+"/script/tls-proto").body); got != "proto=http" {
		t.Errorf("origin saw %q over the plain listener; want proto=http", got)
	}
}

// TestTLSReload checks that SIGHUP re-reads tls_cert and tls_key: new
// connections get a replaced certificate, and a broken one is refused
// with the running certificate kept.
func TestTLSReload(t *testing.T) {
	t.Parallel()
	first, second := newTestCert(t, "first"), newTestCert(t, "second")
	_, c, url, dir := startTLSCache(t, first)
	h2 := tlsClient(false, first.cert, second.cert)
	waitLog := func(want string, n int) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for strings.Count(c.stderr.String(), want) < n {
			if time.Now().After(deadline) {
				t.Fatalf("stderr never showed %q %d times:\n%s", want, n, c.stderr.String())
			}
			time.Sleep(pollEvery)
		}
	}
	path := "/obj/1?distinct=1&size=100"
	if got := tlsGet(t, h2, url+path).peerCN; got != "first" {
		t.Fatalf("before reload: server certificate %q; want first", got)
	}
	// A connection made before the reload keeps working after it.
	kept := tlsClient(false, first.cert)
	kept.Transport.(*http.Transport).DisableKeepAlives = false
	tlsGet(t, kept, url+path)

	second.write(t, dir)
	if err := c.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog("msg=reloaded", 1)
	waitLog(`msg="TLS certificate loaded"`, 2)
	r := tlsGet(t, h2, url+path)
	if r.peerCN != "second" {
		t.Errorf("after reload: server certificate %q; want second", r.peerCN)
	}
	if r.proto != "HTTP/2.0" || r.header.Get("X-Cache") != "HIT" {
		t.Errorf("after reload: %s, X-Cache %q; want HTTP/2.0 and HIT", r.proto, r.header.Get("X-Cache"))
	}
	if r := tlsGet(t, kept, url+path); r.peerCN != "first" {
		t.Errorf("connection made before the reload: server certificate %q; want first (same connection)", r.peerCN)
	}

	// A key that is not the certificate's: the reload is refused.
	if err := os.WriteFile(filepath.Join(dir, "key.pem"), newTestCert(t, "other").keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog("reload failed; keeping the running configuration", 1)
	waitLog("tls_key: ", 1)
	if got := tlsGet(t, h2, url+path).peerCN; got != "second" {
		t.Errorf("after a failed reload: server certificate %q; want second (kept)", got)
	}
}

// TestTLSConfigErrors checks that a TLS setting that cannot work stops the
// process before it listens, exit code 2, naming the file, line and field.
func TestTLSConfigErrors(t *testing.T) {
	t.Parallel()
	cert := newTestCert(t, "errors")
	certFile, keyFile := cert.write(t, t.TempDir())
	missing := filepath.Join(t.TempDir(), "missing.pem")
	tests := []struct {
		name string
		yaml string
		want string
	}{
		{"tls_cert missing", "listen_tls: \"127.0.0.1:0\"\ntls_cert: " + missing + "\ntls_key: " + keyFile + "\n",
			"tls.yaml:2: tls_cert: cannot read the certificate: open " + missing + ": no such file or directory"},
		{"tls_cert is the key", "listen_tls: \"127.0.0.1:0\"\ntls_cert: " + keyFile + "\ntls_key: " + keyFile + "\n",
			"tls.yaml:2: tls_cert: "},
		{"tls_key missing", "listen_tls: \"127.0.0.1:0\"\ntls_cert: " + certFile + "\ntls_key: " + missing + "\n",
			"tls.yaml:3: tls_key: cannot read the private key: open " + missing},
		{"listen_tls without tls_key", "listen_tls: \"127.0.0.1:0\"\ntls_cert: " + certFile + "\n",
			"tls.yaml:1: listen_tls: requires tls_key"},
		{"tls_cert without listen_tls", "tls_cert: " + certFile + "\n",
			"tls.yaml:1: tls_cert: set without listen_tls"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := writeFile(t, "tls.yaml", tt.yaml)
			p := startProc(t, "dedupcache", cacheBin,
				[]string{"-config", cfg, "-upstream", "http://127.0.0.1:1", "-listen", "127.0.0.1:0", "-admin", "127.0.0.1:0"}, nil)
			code, ok := p.exitCode(startTimeout)
			if !ok {
				p.kill()
				t.Fatalf("still running after %v; want exit code 2", startTimeout)
			}
			if code != 2 {
				t.Errorf("exit code %d; want 2", code)
			}
			if !strings.Contains(p.stderr.String(), tt.want) {
				t.Errorf("stderr does not contain %q:\n%s", tt.want, p.stderr.String())
			}
		})
	}
}
