package main

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/socialrx/socialrx/config"
)

// readKeyPEM reads a PEM key file: a private key (PKCS#8, PKCS#1 or SEC 1) or, for jwks, a public key (PKIX).
func readKeyPEM(path string) (any, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read key: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%s: no PEM block", path)
	}
	if k, err := x509.ParsePKCS8PrivateKey(blk.Bytes); err == nil {
		return k, nil
	}
	if k, err := x509.ParsePKCS1PrivateKey(blk.Bytes); err == nil {
		return k, nil
	}
	if k, err := x509.ParseECPrivateKey(blk.Bytes); err == nil {
		return k, nil
	}
	if k, err := x509.ParsePKIXPublicKey(blk.Bytes); err == nil {
		return k, nil
	}
	return nil, fmt.Errorf("%s: not an RSA or EC key in PEM (PKCS#8, PKCS#1, SEC 1 or PKIX)", path)
}

// algFor returns the algorithm socialrx accepts for key's public half (config.SigningAlg).
func algFor(key any) (jose.SignatureAlgorithm, error) {
	alg, err := config.SigningAlg(publicOf(key))
	return jose.SignatureAlgorithm(alg), err
}

// publicOf returns the public half of a key.
func publicOf(key any) any {
	if s, ok := key.(crypto.Signer); ok {
		return s.Public()
	}
	return key
}

// runJWKS prints the directory's jwks entry (a JWK Set of the public key) for a PEM key file.
func runJWKS(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("jwks", flag.ContinueOnError)
	kid := fs.String("kid", "", "key id (default: derived from the key)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError{"jwks takes one PEM key file (private or public)"}
	}
	key, err := readKeyPEM(fs.Arg(0))
	if err != nil {
		return err
	}
	alg, err := algFor(key)
	if err != nil {
		return err
	}
	jwk := jose.JSONWebKey{Key: publicOf(key), Algorithm: string(alg), Use: "sig", KeyID: *kid}
	if jwk.KeyID == "" {
		tp, err := jwk.Thumbprint(crypto.SHA256)
		if err != nil {
			return fmt.Errorf("key thumbprint: %w", err)
		}
		jwk.KeyID = hex.EncodeToString(tp[:8])
	}
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{jwk}})
	if err != nil {
		return fmt.Errorf("encode JWK Set: %w", err)
	}
	fmt.Fprintln(stdout, string(b))
	return nil
}

// runClientAssertion signs a SMART Backend Services client assertion (for trying the token endpoint, or
// from a script); it prints the JWT.
func runClientAssertion(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("client-assertion", flag.ContinueOnError)
	keyPath := fs.String("key", "", "PEM private key file (RSA or EC P-384)")
	kid := fs.String("kid", "", "the key's kid in the directory's jwks")
	client := fs.String("client", "", "the client id in the directory file")
	aud := fs.String("aud", "http://127.0.0.1:8080/oauth/token", "the token endpoint")
	ttl := fs.Duration("ttl", 4*time.Minute, "how long the assertion is valid (at most 5m)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *keyPath == "" || *kid == "" || *client == "" || fs.NArg() > 0 {
		return usageError{"client-assertion needs --key, --kid and --client (and --aud unless the default is right)"}
	}
	if *ttl <= 0 || *ttl > 5*time.Minute {
		return usageError{"--ttl must be positive and at most 5m"}
	}
	key, err := readKeyPEM(*keyPath)
	if err != nil {
		return err
	}
	if _, ok := key.(crypto.Signer); !ok {
		return usageError{"--key must be a private key"}
	}
	alg, err := algFor(key)
	if err != nil {
		return err
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: key, KeyID: *kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return fmt.Errorf("signer: %w", err)
	}
	jti := make([]byte, 16)
	if _, err := rand.Read(jti); err != nil {
		return fmt.Errorf("jti: %w", err)
	}
	now := time.Now()
	tok, err := jwt.Signed(signer).Claims(jwt.Claims{Issuer: *client, Subject: *client, Audience: jwt.Audience{*aud},
		Expiry: jwt.NewNumericDate(now.Add(*ttl)), IssuedAt: jwt.NewNumericDate(now), ID: hex.EncodeToString(jti)}).Serialize()
	if err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	fmt.Fprintln(stdout, tok)
	return nil
}
