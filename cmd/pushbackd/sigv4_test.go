package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// `sign -method aws_sigv4` prints the Authorization the AWS SDK computes for the same
// request, with the headers it signed.
func TestSignPrintsTheSigV4HeadersTheAWSSDKComputes(t *testing.T) {
	const target = "https://hooks.example.com/pushback/maxwell/events?a=b%20c&z=%2F"
	body := []byte(`{"event":"loan.updated"}`)
	file := filepath.Join(t.TempDir(), "body.json")
	if err := os.WriteFile(file, body, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PUSHBACKD_TEST_SIGV4_SECRET", "sigv4-test-secret")
	at := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	code, out, errOut := runCLI(t, "", "sign", "-method", "aws_sigv4", "-secret-env", "PUSHBACKD_TEST_SIGV4_SECRET",
		"-key-id", "AKIDCLI1", "-region", "eu-west-1", "-service", "pushbackd", "-url", target, "-file", file,
		"-timestamp", at.Format(time.RFC3339))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	req, _ := http.NewRequest(http.MethodPost, target, bytes.NewReader(body))
	sum := sha256.Sum256(body)
	req.Header.Set("X-Amz-Content-Sha256", hex.EncodeToString(sum[:]))
	if err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: "AKIDCLI1", SecretAccessKey: "sigv4-test-secret"},
		req, hex.EncodeToString(sum[:]), "pushbackd", "eu-west-1", at); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Authorization: " + req.Header.Get("Authorization"), "X-Amz-Date: 20261127T120000Z",
		"X-Amz-Content-Sha256: " + hex.EncodeToString(sum[:])} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	t.Run("without -url it says the URL is signed too", func(t *testing.T) {
		code, _, errOut := runCLI(t, "x", "sign", "-method", "aws_sigv4", "-secret-env", "PUSHBACKD_TEST_SIGV4_SECRET",
			"-key-id", "AKIDCLI1", "-region", "eu-west-1", "-service", "pushbackd")
		if code != 2 || !strings.Contains(errOut, "URL") || strings.Contains(errOut, "sigv4-test-secret") {
			t.Fatalf("exit %d: %s", code, errOut)
		}
	})
}
