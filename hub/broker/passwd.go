package broker

import (
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Agent secrets are hashed in Mosquitto 2's password-file format, "$7$"
// (PBKDF2-SHA512): the embedded broker checks them and the same hashes go
// into a password file for an external Mosquitto, so one enrolment serves
// either broker. The secrets are 256-bit random strings, not passwords
// people choose, so the iteration count guards nothing that a slower hash
// would; it is kept modest because every agent reconnect pays it.
const (
	hashIterations = 1000
	saltLen        = 12
	hashLen        = 64
)

// HashSecret returns the Mosquitto "$7$" hash of secret.
func HashSecret(secret string) (string, error) {
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("broker: salt: %w", err)
	}
	return hashWith(secret, salt, hashIterations)
}

func hashWith(secret string, salt []byte, iter int) (string, error) {
	key, err := pbkdf2.Key(sha512.New, secret, salt, iter, hashLen)
	if err != nil {
		return "", fmt.Errorf("broker: hash: %w", err)
	}
	enc := base64.StdEncoding
	return "$7$" + strconv.Itoa(iter) + "$" + enc.EncodeToString(salt) + "$" + enc.EncodeToString(key), nil
}

// errBadHash is a stored hash not in the "$7$" format.
var errBadHash = errors.New("broker: not a $7$ password hash")

// VerifySecret reports whether secret matches hash, in constant time.
func VerifySecret(hash, secret string) (bool, error) {
	parts := strings.Split(hash, "$")
	// "", "7", iterations, salt, hash
	if len(parts) != 5 || parts[0] != "" || parts[1] != "7" {
		return false, errBadHash
	}
	iter, err := strconv.Atoi(parts[2])
	if err != nil || iter < 1 || iter > 10_000_000 {
		return false, errBadHash
	}
	salt, err := base64.StdEncoding.DecodeString(parts[3])
	if err != nil {
		return false, errBadHash
	}
	want, err := base64.StdEncoding.DecodeString(parts[4])
	if err != nil || len(want) != hashLen {
		return false, errBadHash
	}
	got, err := pbkdf2.Key(sha512.New, secret, salt, iter, hashLen)
	if err != nil {
		return false, fmt.Errorf("broker: hash: %w", err)
	}
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}
