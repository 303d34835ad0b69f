package security

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// JWTLifetime is how long a token SignJWT makes stays valid: long enough to paste the
// printed command, short enough that a leaked one is soon worthless.
const JWTLifetime = 5 * time.Minute

// SignJWT makes the token a partner's identity provider would send to an endpoint of
// method jwt: signed with privatePEM (PKCS#8, PKCS#1 or SEC 1) under the first of the
// endpoint's algorithms that fits the key, with its issuer and audience, valid from now for
// JWTLifetime. It serves `pushbackd curl` for testing an endpoint by hand.
func SignJWT(cfg Config, privatePEM []byte, now time.Time) (string, error) {
	if _, err := New(cfg); err != nil {
		return "", fmt.Errorf("invalid security config: %w", err)
	}
	if cfg.Method != JWT {
		return "", fmt.Errorf("endpoint method is %s, not jwt", cfg.Method)
	}
	key, err := parsePrivateKey(privatePEM)
	if err != nil {
		return "", err
	}
	pub := key.(crypto.Signer).Public()
	var alg string
	for _, a := range cfg.Algorithms {
		if keyFits(a, pub) {
			alg = a
			break
		}
	}
	if alg == "" {
		return "", fmt.Errorf("a %s key fits none of the endpoint's algorithms", keyType(pub))
	}
	claims := ownTokenClaims(cfg.Issuer, cfg.Audience, "pushbackd-curl", now)
	return jwt.NewWithClaims(jwt.GetSigningMethod(alg), claims).SignedString(key)
}

// ownTokenClaims are the claims of a token pushbackd signs itself (curl, and an HMAC
// endpoint's signing): the endpoint's issuer and audience, valid from now (the clock when
// zero) for JWTLifetime.
func ownTokenClaims(issuer, audience, subject string, now time.Time) jwt.RegisteredClaims {
	if now.IsZero() {
		now = time.Now()
	}
	return jwt.RegisteredClaims{
		Issuer:    issuer,
		Audience:  jwt.ClaimStrings{audience},
		Subject:   subject,
		IssuedAt:  jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(JWTLifetime)),
	}
}

func parsePrivateKey(b []byte) (any, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("the key file holds no PEM block")
	}
	var k any
	var err error
	switch blk.Type {
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(blk.Bytes)
	default:
		return nil, fmt.Errorf("PEM block %q is not a private key", blk.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", blk.Type, err)
	}
	switch k.(type) {
	case *rsa.PrivateKey, *ecdsa.PrivateKey, ed25519.PrivateKey:
		return k, nil
	}
	return nil, fmt.Errorf("unsupported private key type %T", k)
}
