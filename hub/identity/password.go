package identity

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"
)

const (
	// maxPasswordLen bounds what is hashed, in bytes.
	maxPasswordLen = 256
	// maxArgonMemory bounds the memory a stored hash may ask for (KiB), so
	// a tampered database cannot make one verification take gigabytes.
	maxArgonMemory = 1 << 20
	saltBytes      = 16
	keyBytes       = 32
)

var b64 = base64.RawStdEncoding

// hashPassword returns the argon2id PHC string of password.
func hashPassword(p Argon2Params, password string) string {
	salt := make([]byte, saltBytes)
	rand.Read(salt)
	return formatPHC(p, salt, argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, keyBytes))
}

// unmatchableHash returns a PHC string with the costs of p, a random salt
// and a random key: checking any password against it takes as long as
// against a real hash of those costs, yet it costs nothing to make (no
// 64 MiB Argon2 run at start) and no password matches it.
func unmatchableHash(p Argon2Params) string {
	salt, key := make([]byte, saltBytes), make([]byte, keyBytes)
	rand.Read(salt)
	rand.Read(key)
	return formatPHC(p, salt, key)
}

func formatPHC(p Argon2Params, salt, key []byte) string {
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.Memory, p.Time, p.Threads,
		b64.EncodeToString(salt), b64.EncodeToString(key))
}

var errBadPHC = errors.New("identity: not an argon2id hash")

// verifyPassword reports whether password matches the PHC string, in
// constant time, using the costs written in the hash.
func verifyPassword(phc, password string) (bool, error) {
	// "", "argon2id", "v=19", "m=..,t=..,p=..", salt, key
	parts := strings.Split(phc, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" || parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return false, errBadPHC
	}
	var m, t, p uint64
	for kv := range strings.SplitSeq(parts[3], ",") {
		k, v, _ := strings.Cut(kv, "=")
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return false, errBadPHC
		}
		switch k {
		case "m":
			m = n
		case "t":
			t = n
		case "p":
			p = n
		default:
			return false, errBadPHC
		}
	}
	if t < 1 || t > 64 || p < 1 || p > 255 || m < 8*p || m > maxArgonMemory {
		return false, errBadPHC
	}
	salt, err := b64.DecodeString(parts[4])
	if err != nil || len(salt) < 8 {
		return false, errBadPHC
	}
	want, err := b64.DecodeString(parts[5])
	if err != nil || len(want) < 16 || len(want) > 64 {
		return false, errBadPHC
	}
	got := argon2.IDKey([]byte(password), salt, uint32(t), uint32(m), uint8(p), uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// hashWork runs f while holding one of the hash workers, so that argon2's
// memory and CPU stay bounded however many logins arrive; the rest queue.
// It fails only when ctx ends first.
func (s *Service) hashWork(ctx context.Context, f func()) error {
	select {
	case s.hashSem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-s.hashSem }()
	f()
	return nil
}

// check lists the rules password breaks for account name; nil when it
// breaks none. History is checked apart, as it needs the hashes.
func (p PasswordPolicy) check(name, password string) []string {
	var problems []string
	n := utf8.RuneCountInString(password)
	switch {
	case !utf8.ValidString(password):
		problems = append(problems, "must be valid UTF-8 text")
	case n < p.MinLength:
		problems = append(problems, fmt.Sprintf("must be at least %d characters long (it has %d)", p.MinLength, n))
	case len(password) > maxPasswordLen:
		problems = append(problems, fmt.Sprintf("must be at most %d bytes long", maxPasswordLen))
	}
	if c := classes(password); c < p.MinClasses {
		problems = append(problems, fmt.Sprintf("must mix at least %d of: lower case, upper case, digits, other characters (it has %d)", p.MinClasses, c))
	}
	if name != "" && strings.Contains(strings.ToLower(password), strings.ToLower(name)) {
		problems = append(problems, "must not contain the account name")
	}
	for _, r := range password {
		if unicode.IsControl(r) {
			problems = append(problems, "must not contain control characters")
			break
		}
	}
	return problems
}

func classes(s string) int {
	var lower, upper, digit, other int
	for _, r := range s {
		switch {
		case unicode.IsLower(r):
			lower = 1
		case unicode.IsUpper(r):
			upper = 1
		case unicode.IsDigit(r):
			digit = 1
		default:
			other = 1
		}
	}
	return lower + upper + digit + other
}

// historyProblem is the policy's complaint about a reused password.
func (p PasswordPolicy) historyProblem() string {
	if p.History == 1 {
		return "must differ from the current password"
	}
	return fmt.Sprintf("must differ from the last %d passwords", p.History)
}

// passwordAlphabet leaves out characters people confuse (0/O, 1/l/I) in
// an initial password read off a screen.
const passwordAlphabet = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789-_.!@#%+="

// generate returns a random password that meets the policy, for a
// new account or a reset without one.
func (p PasswordPolicy) generate(name string) string {
	n := max(16, p.MinLength)
	for {
		b := make([]byte, n)
		for i := range b {
			b[i] = passwordAlphabet[randIndex(len(passwordAlphabet))]
		}
		if pw := string(b); p.check(name, pw) == nil && classes(pw) == 4 {
			return pw
		}
	}
}

// randIndex returns a uniform random number in [0, n), n ≤ 256.
func randIndex(n int) int {
	limit := 256 - 256%n // reject the bias at the top
	var b [1]byte
	for {
		rand.Read(b[:])
		if int(b[0]) < limit {
			return int(b[0]) % n
		}
	}
}
