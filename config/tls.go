package config

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
)

// LoadKeyPair reads the PEM certificate chain in certFile and the PEM
// private key in keyFile (the files tls_cert and tls_key name) and checks
// that they belong together. Validate calls it, and so does main at start
// and on every reload. A problem is an [*Error] naming the field at fault
// ("tls_cert" or "tls_key") without an origin, which the caller may add.
func LoadKeyPair(certFile, keyFile string) (tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return tls.Certificate{}, &Error{Field: "tls_cert", Problem: fmt.Sprintf("cannot read the certificate: %v", err)}
	}
	if err := checkCertPEM(certPEM); err != nil {
		return tls.Certificate{}, &Error{Field: "tls_cert", Problem: fmt.Sprintf("%q: %v", certFile, err)}
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return tls.Certificate{}, &Error{Field: "tls_key", Problem: fmt.Sprintf("cannot read the private key: %v", err)}
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, &Error{Field: "tls_key", Problem: fmt.Sprintf("%q does not hold the private key of tls_cert: %v", keyFile, err)}
	}
	return pair, nil
}

// checkCertPEM checks that data holds one or more PEM CERTIFICATE blocks
// that parse as X.509 certificates, and nothing else.
func checkCertPEM(data []byte) error {
	n := 0
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			if strings.Contains(b.Type, "PRIVATE KEY") {
				return fmt.Errorf("holds a %s, not a certificate (tls_cert and tls_key swapped?)", b.Type)
			}
			return fmt.Errorf("holds a PEM %s block; want only CERTIFICATE blocks", quote(b.Type))
		}
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			return fmt.Errorf("certificate %d does not parse: %v", n+1, err)
		}
		n++
	}
	if n == 0 {
		return errors.New("no PEM CERTIFICATE block found")
	}
	return nil
}

// tls checks listen_tls, tls_cert and tls_key: the certificate and key are
// given exactly when the TLS listener is, and they load as a key pair.
func (v *checker) tls() {
	c := v.c
	if c.ListenTLS == "" {
		if c.TLSCert != "" {
			v.fail("tls_cert", "set without listen_tls, which would serve it")
		}
		if c.TLSKey != "" {
			v.fail("tls_key", "set without listen_tls, which would serve it")
		}
		return
	}
	v.addr("listen_tls", c.ListenTLS)
	if !strings.HasSuffix(c.ListenTLS, ":0") {
		for _, other := range []struct{ field, addr string }{
			{"listen", c.Listen}, {"admin.listen", c.Admin.Listen}, {"metrics.listen", c.Metrics.Listen},
		} {
			if c.ListenTLS == other.addr {
				v.fail("listen_tls", "%s is also the %s address", quote(c.ListenTLS), other.field)
			}
		}
	}
	if c.TLSCert == "" {
		v.fail("listen_tls", "requires tls_cert, the PEM certificate file to serve")
	}
	if c.TLSKey == "" {
		v.fail("listen_tls", "requires tls_key, the PEM private key file of tls_cert")
	}
	if c.TLSCert == "" || c.TLSKey == "" {
		return
	}
	if _, err := LoadKeyPair(c.TLSCert, c.TLSKey); err != nil {
		var e *Error
		if !errors.As(err, &e) {
			e = &Error{Field: "tls_cert", Problem: err.Error()}
		}
		v.fail(e.Field, "%s", e.Problem)
	}
}
