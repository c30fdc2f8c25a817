package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// tlsFiles are PEM files for the TLS tests, in one temporary directory.
type tlsFiles struct {
	dir       string
	cert, key string // a matching self-signed pair for 127.0.0.1
	otherKey  string // a key that is not cert's
	garbage   string // not PEM
}

func writeTLSFiles(t *testing.T) tlsFiles {
	t.Helper()
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	keyPEM := func(k *ecdsa.PrivateKey) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "dedupcache test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tlsFiles{
		dir:      dir,
		cert:     write("cert.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		key:      write("key.pem", keyPEM(key)),
		otherKey: write("other-key.pem", keyPEM(other)),
		garbage:  write("garbage.pem", []byte("not a PEM file\n")),
	}
}

// TestValidateTLS covers listen_tls, tls_cert and tls_key in the manner of
// validateTests; want may hold {dir}, the directory of the files.
func TestValidateTLS(t *testing.T) {
	f := writeTLSFiles(t)
	on := func(c *Config) { c.ListenTLS, c.TLSCert, c.TLSKey = "127.0.0.1:8443", f.cert, f.key }
	tests := []struct {
		name   string
		change func(*Config)
		want   string // whole error text; "" means valid
	}{
		{"off", func(c *Config) {}, ""},
		{"on", on, ""},
		{"on, ephemeral port beside the proxy's", func(c *Config) { on(c); c.Listen, c.ListenTLS = "127.0.0.1:0", "127.0.0.1:0" }, ""},
		{"on, all interfaces", func(c *Config) { on(c); c.ListenTLS = ":8443" }, ""},
		{"cert without listen_tls", func(c *Config) { c.TLSCert = f.cert },
			`tls_cert: set without listen_tls, which would serve it`},
		{"key without listen_tls", func(c *Config) { c.TLSKey = f.key },
			`tls_key: set without listen_tls, which would serve it`},
		{"listen_tls without cert and key", func(c *Config) { c.ListenTLS = "127.0.0.1:8443" },
			"listen_tls: requires tls_cert, the PEM certificate file to serve\n" +
				"listen_tls: requires tls_key, the PEM private key file of tls_cert"},
		{"listen_tls without key", func(c *Config) { on(c); c.TLSKey = "" },
			`listen_tls: requires tls_key, the PEM private key file of tls_cert`},
		{"listen_tls not host:port", func(c *Config) { on(c); c.ListenTLS = "8443" },
			`listen_tls: "8443" is not host:port (want e.g. 127.0.0.1:8080 or :8080)`},
		{"listen_tls on the proxy address", func(c *Config) { on(c); c.ListenTLS = c.Listen },
			`listen_tls: "127.0.0.1:8080" is also the listen address`},
		{"listen_tls on the admin address", func(c *Config) { on(c); c.ListenTLS = c.Admin.Listen },
			`listen_tls: "127.0.0.1:9091" is also the admin.listen address`},
		{"listen_tls on the metrics address", func(c *Config) { on(c); c.Metrics.Listen = "127.0.0.1:9090"; c.ListenTLS = "127.0.0.1:9090" },
			`listen_tls: "127.0.0.1:9090" is also the metrics.listen address`},
		{"cert missing", func(c *Config) { on(c); c.TLSCert = filepath.Join(f.dir, "nope.pem") },
			`tls_cert: cannot read the certificate: open {dir}/nope.pem: no such file or directory`},
		{"cert not PEM", func(c *Config) { on(c); c.TLSCert = f.garbage },
			`tls_cert: "{dir}/garbage.pem": no PEM CERTIFICATE block found`},
		{"cert and key swapped", func(c *Config) { on(c); c.TLSCert, c.TLSKey = f.key, f.cert },
			`tls_cert: "{dir}/key.pem": holds a PRIVATE KEY, not a certificate (tls_cert and tls_key swapped?)`},
		{"key missing", func(c *Config) { on(c); c.TLSKey = filepath.Join(f.dir, "nope.pem") },
			`tls_key: cannot read the private key: open {dir}/nope.pem: no such file or directory`},
		{"key not PEM", func(c *Config) { on(c); c.TLSKey = f.garbage },
			`tls_key: "{dir}/garbage.pem" does not hold the private key of tls_cert: tls: failed to find any PEM data in key input`},
		{"key of another certificate", func(c *Config) { on(c); c.TLSKey = f.otherKey },
			`tls_key: "{dir}/other-key.pem" does not hold the private key of tls_cert: tls: private key does not match public key`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid()
			tt.change(&c)
			got := ""
			if err := c.Validate(); err != nil {
				got = err.Error()
			}
			if want := strings.ReplaceAll(tt.want, "{dir}", f.dir); got != want {
				t.Errorf("Validate() = %q; want %q", got, want)
			}
		})
	}
}

// TestTLSFieldsLoad checks that the fields load from the file, that their
// errors carry the file and line, that overrides set them as flags and
// $DEDUPCACHE_* variables do, and which of them reload.
func TestTLSFieldsLoad(t *testing.T) {
	f := writeTLSFiles(t)
	c, err := loadString(t, "listen_tls: 127.0.0.1:8443\ntls_cert: "+f.cert+"\ntls_key: "+f.key+"\nupstream: http://127.0.0.1:3000\n")
	if err != nil {
		t.Fatal(err)
	}
	if c.ListenTLS != "127.0.0.1:8443" || c.TLSCert != f.cert || c.TLSKey != f.key {
		t.Errorf("got listen_tls %q, tls_cert %q, tls_key %q", c.ListenTLS, c.TLSCert, c.TLSKey)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}

	bad := c
	if err := bad.Set("tls_key", f.otherKey, "$DEDUPCACHE_TLS_KEY"); err != nil {
		t.Fatal(err)
	}
	want := `$DEDUPCACHE_TLS_KEY: tls_key: "` + f.otherKey + `" does not hold the private key of tls_cert: tls: private key does not match public key`
	if err := bad.Validate(); err == nil || err.Error() != want {
		t.Errorf("Validate() = %v; want %s", err, want)
	}

	c, err = loadString(t, "upstream: http://127.0.0.1:3000\nlisten_tls: 127.0.0.1:8443\ntls_cert: /nonexistent/cert.pem\ntls_key: "+f.key+"\n")
	if err != nil {
		t.Fatal(err)
	}
	want = `config.yaml:3: tls_cert: cannot read the certificate: open /nonexistent/cert.pem: no such file or directory`
	if err := c.Validate(); err == nil || err.Error() != want {
		t.Errorf("Validate() = %v; want %s", err, want)
	}

	c, err = loadString(t, "upstream: http://127.0.0.1:3000\nlisten_tls: 127.0.0.1:8443\n")
	if err != nil {
		t.Fatal(err)
	}
	want = "config.yaml:2: listen_tls: requires tls_cert, the PEM certificate file to serve\n" +
		"config.yaml:2: listen_tls: requires tls_key, the PEM private key file of tls_cert"
	if err := c.Validate(); err == nil || err.Error() != want {
		t.Errorf("Validate() = %v; want %s", err, want)
	}

	// The certificate files reload; the listener needs a restart.
	a, b := valid(), valid()
	b.ListenTLS, b.TLSCert, b.TLSKey = "127.0.0.1:8443", f.cert, f.key
	if got, want := RestartFields(a, b), []string{"listen_tls"}; !reflect.DeepEqual(got, want) {
		t.Errorf("RestartFields = %q; want %q", got, want)
	}
}
