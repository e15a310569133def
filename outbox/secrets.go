package outbox

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// Stored secrets (README "Security"): what a client gives socialrx to send on its behalf — a FHIR
// Subscription's channel.header values, usually the credentials of the GP system's endpoint — is stored
// encrypted with AES-256-GCM under SOCIALRX_SECRET_KEY, bound to the record it belongs to (a value copied into
// another subscription's row does not decrypt), and decrypted only to send it. It is never logged nor
// returned. Rotation: set the new key as SOCIALRX_SECRET_KEY and the old one in SOCIALRX_SECRET_KEY_PREVIOUS;
// values sealed with the old key still open (each names its key) and new ones use the new key. Without any
// key, nothing can be sealed: a Subscription with channel.header is refused.

// sealedPrefix starts every sealed value: the format version, then the key id.
const sealedPrefix = "enc:v1:"

// Errors of the keyring.
var (
	// ErrNoSecretKey: no key to seal with, or none of the keys sealed this value.
	ErrNoSecretKey = errors.New("no secret key for this value (SOCIALRX_SECRET_KEY unset, or rotated without SOCIALRX_SECRET_KEY_PREVIOUS)")
	// ErrSealedDamaged: the value is not one a keyring sealed, or it was altered or moved to another record.
	ErrSealedDamaged = errors.New("sealed value damaged, altered or moved to another record")
)

// Keyring seals and opens stored secrets. A nil *Keyring has no key: Seal fails, Open passes unsealed
// (older, plain) values through and fails on sealed ones.
type Keyring struct {
	currentID string
	keys      map[string]cipher.AEAD
}

// NewKeyring returns a keyring that seals with current (32 bytes) and opens what current or any of previous
// sealed.
func NewKeyring(current []byte, previous ...[]byte) (*Keyring, error) {
	k := &Keyring{keys: map[string]cipher.AEAD{}}
	for i, key := range append([][]byte{current}, previous...) {
		if len(key) != 32 {
			return nil, fmt.Errorf("outbox: secret key %d is %d bytes; AES-256 needs 32", i, len(key))
		}
		block, err := aes.NewCipher(key)
		if err != nil {
			return nil, fmt.Errorf("outbox: secret key: %w", err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("outbox: secret key: %w", err)
		}
		id := keyID(key)
		if i == 0 {
			k.currentID = id
		}
		if _, dup := k.keys[id]; !dup {
			k.keys[id] = aead
		}
	}
	return k, nil
}

// RandomKeyring is a keyring with a random key of this process only (the demo: what it seals does not open
// after a restart).
func RandomKeyring() (*Keyring, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("outbox: random secret key: %w", err)
	}
	return NewKeyring(key)
}

// keyID names a key without revealing it.
func keyID(key []byte) string {
	sum := sha256.Sum256(append([]byte("socialrx secret key id\x00"), key...))
	return hex.EncodeToString(sum[:4])
}

// IsSealed reports whether s is a sealed value (as opposed to a plain one stored before sealing existed).
func IsSealed(s string) bool { return strings.HasPrefix(s, sealedPrefix) }

// Seal encrypts plain for the record named by context (e.g. "subscription/ID/header"): only Open with the
// same context recovers it.
func (k *Keyring) Seal(plain, context string) (string, error) {
	if k == nil {
		return "", ErrNoSecretKey
	}
	aead := k.keys[k.currentID]
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("outbox: seal: %w", err)
	}
	ct := aead.Seal(nonce, nonce, []byte(plain), []byte(context))
	return sealedPrefix + k.currentID + ":" + base64.RawURLEncoding.EncodeToString(ct), nil
}

// Open decrypts a sealed value of the record named by context; a value that is not sealed (stored before
// sealing existed) is returned as it is.
func (k *Keyring) Open(stored, context string) (string, error) {
	if !IsSealed(stored) {
		return stored, nil
	}
	id, b64, ok := strings.Cut(strings.TrimPrefix(stored, sealedPrefix), ":")
	if !ok {
		return "", ErrSealedDamaged
	}
	if k == nil {
		return "", ErrNoSecretKey
	}
	aead, ok := k.keys[id]
	if !ok {
		return "", ErrNoSecretKey
	}
	raw, err := base64.RawURLEncoding.DecodeString(b64)
	if err != nil || len(raw) < aead.NonceSize() {
		return "", ErrSealedDamaged
	}
	plain, err := aead.Open(nil, raw[:aead.NonceSize()], raw[aead.NonceSize():], []byte(context))
	if err != nil {
		return "", ErrSealedDamaged
	}
	return string(plain), nil
}

// SubscriptionHeaderContext is the sealing context of subscription id's channel.header values.
func SubscriptionHeaderContext(id string) string { return "subscription/" + id + "/channel.header" }
