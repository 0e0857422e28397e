package audit

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// keySize is the chain key's length: HMAC-SHA256's block of security.
const keySize = 32

// hashSize is a record hash's length in bytes.
const hashSize = sha256.Size

// genesis is the hash the first record chains to.
var genesis = make([]byte, hashSize)

// genesisHex is genesis as the anchor row stores it.
var genesisHex = hex.EncodeToString(genesis)

// canonVersion opens every canonical encoding, so a later change of the
// encoding cannot produce the bytes of this one.
const canonVersion = 1

// canonical encodes every field of r but Hash, in a fixed order, each
// string preceded by its length: two different records never encode alike
// (the fuzz test decodes it back).
func canonical(r *Record) []byte {
	fields := [...]string{r.Actor, r.Role, r.Session, r.Remote, r.Action, r.Object, string(r.Outcome), r.Detail}
	n := 1 + 8 + 8 + 4*len(fields)
	for _, f := range fields {
		n += len(f)
	}
	b := make([]byte, 0, n)
	b = append(b, canonVersion)
	b = binary.BigEndian.AppendUint64(b, r.Seq)
	b = binary.BigEndian.AppendUint64(b, uint64(r.At.UnixNano()))
	for _, f := range fields {
		b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
		b = append(b, f...)
	}
	return b
}

// chain computes record hashes under one key. It reuses one HMAC state, so
// it belongs to one goroutine at a time.
type chain struct{ mac hash.Hash }

func newChain(key []byte) *chain { return &chain{mac: hmac.New(sha256.New, key)} }

// sum returns the hash of r chained to prev.
func (c *chain) sum(prev []byte, r *Record) []byte {
	c.mac.Reset()
	c.mac.Write(prev)
	c.mac.Write(canonical(r))
	return c.mac.Sum(nil)
}

// anchorMAC authenticates a retention anchor, so someone without the key
// cannot delete the oldest records and pass the deletion off as retention.
// Its input (6+8+32 bytes) is shorter than any record's (at least 32+49),
// so no anchor can pass for a record or the reverse.
func (c *chain) anchorMAC(seq uint64, hash []byte) string {
	c.mac.Reset()
	c.mac.Write([]byte("anchor"))
	c.mac.Write(binary.BigEndian.AppendUint64(nil, seq))
	c.mac.Write(hash)
	return hex.EncodeToString(c.mac.Sum(nil))
}

// decodeHash reads a stored hash.
func decodeHash(s string) ([]byte, error) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != hashSize {
		return nil, fmt.Errorf("hash %.16q… is not %d hex digits", s, 2*hashSize)
	}
	return b, nil
}

// fingerprint names a key without revealing it: the first 8 bytes of a
// domain-separated SHA-256, in hex.
func fingerprint(key []byte) string {
	h := sha256.Sum256(append([]byte("citywatch audit key\x00"), key...))
	return hex.EncodeToString(h[:8])
}

// loadKey reads the chain key from path, creating the file with a new
// random key when it does not exist. It reports whether it created it.
func loadKey(path string) (key []byte, created bool, err error) {
	text, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		if err := createKey(path); err != nil {
			return nil, false, err
		}
		created = true
		text, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, false, fmt.Errorf("audit: key file: %w", err)
	}
	key, err = hex.DecodeString(strings.TrimSpace(string(text)))
	if err != nil || len(key) != keySize {
		// The file's content is a secret: never echo it.
		return nil, false, fmt.Errorf("audit: key file %s is malformed: want %d hex digits (%d random bytes) on one line",
			path, 2*keySize, keySize)
	}
	return key, created, nil
}

// createKey writes a new key to a temporary file and links it into place,
// which fails if path exists: when two processes start on a new database
// at once, both end up reading the one key that won, never a half-written
// file.
func createKey(path string) error {
	key := make([]byte, keySize)
	rand.Read(key) // never fails (crypto/rand since Go 1.24)
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".audit-key-*")
	if err != nil {
		return fmt.Errorf("audit: create key file: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	_, err = f.WriteString(hex.EncodeToString(key) + "\n")
	err = errors.Join(err, f.Chmod(0o600), f.Sync(), f.Close())
	if err != nil {
		return fmt.Errorf("audit: create key file: %w", err)
	}
	if err := os.Link(tmp, path); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("audit: create key file: %w", err)
	}
	// The link must survive a crash as much as the records it protects.
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("audit: create key file: %w", err)
	}
	if err := errors.Join(d.Sync(), d.Close()); err != nil {
		return fmt.Errorf("audit: create key file: sync %s: %w", dir, err)
	}
	return nil
}
