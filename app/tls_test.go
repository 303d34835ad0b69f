package app

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
)

// writeCert writes a self-signed certificate for 127.0.0.1 named cn, and its key.
func writeCert(t *testing.T, certFile, keyFile, cn string) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	// Write to temp names and rename, as certificate tools do, so a reader never sees half.
	for path, block := range map[string]*pem.Block{certFile: {Type: "CERTIFICATE", Bytes: der}, keyFile: {Type: "EC PRIVATE KEY", Bytes: keyDER}} {
		if err := os.WriteFile(path+".tmp", pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".tmp", path); err != nil {
			t.Fatal(err)
		}
	}
	cert, _ := x509.ParseCertificate(der)
	return cert
}

func TestBothListenersServeTLSAndReloadTheCertificate(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	first := writeCert(t, certFile, keyFile, "first")
	writeFiles(t, dir, map[string]string{
		"pushbackd.yaml": "tls: {cert_file: cert.pem, key_file: key.pem}\nadmin: {tls: {cert_file: cert.pem, key_file: key.pem}}\n" +
			"limits: {auth_failures: {per_client: 1000}}\ndata_dir: " + filepath.Join(dir, "data") + "\n",
		"partners/acme.yaml": "id: acme\nendpoints: [{name: e, saga: answers, mode: sync, security: {method: bearer, tokens: [{value: t}]}}]\n",
		"sagas/answers.yaml": "name: answers\nsteps:\n  - {name: answer, respond: {status: 200}}\n",
	})
	a, err := New(Options{ConfigPath: filepath.Join(dir, "pushbackd.yaml"), Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer a.Stop(context.Background())

	client := func(trust *x509.Certificate, maxVersion uint16) *http.Client {
		pool := x509.NewCertPool()
		pool.AddCert(trust)
		return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool, MaxVersion: maxVersion}, DisableKeepAlives: true}}
	}
	post := func(c *http.Client) (*http.Response, error) {
		req, _ := http.NewRequest("POST", "https://"+a.Addr()+"/pushback/acme/e", strings.NewReader("{}"))
		req.Header.Set("Authorization", "Bearer t")
		return c.Do(req)
	}
	resp, err := post(client(first, 0))
	if err != nil {
		t.Fatalf("HTTPS pushback: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.TLS == nil || resp.TLS.Version < tls.VersionTLS12 {
		t.Fatalf("HTTPS pushback: %d %+v", resp.StatusCode, resp.TLS)
	}
	if resp, err := client(first, 0).Get("https://" + a.AdminAddr() + "/healthz"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("HTTPS admin: %v", err)
	}
	if _, err := post(client(first, tls.VersionTLS11)); err == nil {
		t.Fatal("a TLS 1.1 client was served")
	}
	if resp, err := http.Post("http://"+a.Addr()+"/pushback/acme/e", "text/plain", strings.NewReader("{}")); err == nil && resp.StatusCode == 200 {
		t.Fatal("plain HTTP was served on a TLS listener")
	}

	second := writeCert(t, certFile, keyFile, "second")
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := post(client(second, 0))
		if err == nil {
			resp.Body.Close()
			if resp.TLS.PeerCertificates[0].Subject.CommonName != "second" {
				t.Fatalf("served %s", resp.TLS.PeerCertificates[0].Subject.CommonName)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the renewed certificate was never served: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestABadCertificateIsAConfigError(t *testing.T) {
	dir := t.TempDir()
	_ = os.MkdirAll(filepath.Join(dir, "partners"), 0o755)
	if err := os.WriteFile(filepath.Join(dir, "pushbackd.yaml"), []byte("tls: {cert_file: nope.pem, key_file: nope.key}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := New(Options{ConfigPath: filepath.Join(dir, "pushbackd.yaml")})
	if err == nil || !strings.Contains(err.Error(), "pushbackd.yaml:1:6: tls:") {
		t.Fatalf("got %v", err)
	}
}
