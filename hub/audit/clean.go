package audit

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Field bounds in bytes. Longer values are cut, not refused: a record must
// not be lost to a long note.
const (
	MaxField  = 256
	MaxDetail = 4096
)

// ErrInvalid marks a record Append refuses: no actor, no action, or an
// unknown outcome.
var ErrInvalid = errors.New("invalid audit record")

// Times the chain can encode (Unix nanoseconds in an int64).
var (
	minTime = time.Unix(0, math.MinInt64)
	maxTime = time.Unix(0, math.MaxInt64)
)

// Valid reports whether o is one of the three outcomes.
func (o Outcome) Valid() bool { return o == Success || o == Failure || o == Denied }

// prepare checks r and returns it as it will be stored: At set and in
// UTC, strings valid UTF-8 without control characters and within bounds.
// It reports which fields it cut.
func prepare(r Record, now time.Time) (Record, []string, error) {
	switch {
	case r.Actor == "":
		return r, nil, fmt.Errorf("audit: %w: actor is required", ErrInvalid)
	case r.Action == "":
		return r, nil, fmt.Errorf("audit: %w: action is required", ErrInvalid)
	case !r.Outcome.Valid():
		return r, nil, fmt.Errorf("audit: %w: outcome %q is not success, failure or denied", ErrInvalid, clip(string(r.Outcome)))
	}
	if r.At.IsZero() {
		r.At = now
	}
	if r.At.Before(minTime) || r.At.After(maxTime) {
		return r, nil, fmt.Errorf("audit: %w: time %s is out of range", ErrInvalid, r.At.Format(time.RFC3339))
	}
	r.At = time.Unix(0, r.At.UnixNano()).UTC()
	r.Seq, r.Hash = 0, ""
	var cut []string
	for _, f := range [...]struct {
		name  string
		s     *string
		limit int
	}{
		{"actor", &r.Actor, MaxField}, {"role", &r.Role, MaxField}, {"session", &r.Session, MaxField},
		{"remote", &r.Remote, MaxField}, {"action", &r.Action, MaxField}, {"object", &r.Object, MaxField},
		{"detail", &r.Detail, MaxDetail},
	} {
		var truncated bool
		if *f.s, truncated = clean(*f.s, f.limit); truncated {
			cut = append(cut, f.name)
		}
	}
	return r, cut, nil
}

// clean returns s as valid UTF-8 with control, bidirectional-override and
// line-separator characters replaced by U+FFFD (so a crafted name cannot
// forge lines or reorder what an auditor reads), cut to limit bytes with
// "…" at the end when longer.
func clean(s string, limit int) (string, bool) {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) || r == '\u2028' || r == '\u2029' {
			return utf8.RuneError
		}
		return r
	}, s)
	if len(s) <= limit {
		return s, false
	}
	n := limit - len("…")
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…", true
}

// clip shortens what a caller sent before it is echoed in an error.
func clip(s string) string {
	if len(s) <= 64 {
		return s
	}
	n := 64
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
