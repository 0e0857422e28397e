// Package param reads an endpoint's query parameters strictly: a name the
// endpoint does not know, a name given twice or a value that does not parse
// is a 400 naming every problem at once, never a parameter silently
// ignored.
package param

import (
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Values are the parameters a request gave, each once. Read them with the
// typed getters, then call Err.
type Values struct {
	v    map[string]string
	errs []error
}

// Parse splits a raw query string and checks every name against known.
// Empty values count as not given.
func Parse(raw string, known ...string) *Values {
	p := &Values{v: map[string]string{}}
	q, err := url.ParseQuery(raw)
	if err != nil {
		p.errs = append(p.errs, errors.New("the query string is not well-formed"))
		return p
	}
	for _, name := range slices.Sorted(maps.Keys(q)) {
		vs := q[name]
		switch {
		case !slices.Contains(known, name) && len(known) == 0:
			p.errs = append(p.errs, fmt.Errorf("unknown parameter %q; this endpoint takes none", Clip(name)))
		case !slices.Contains(known, name):
			p.errs = append(p.errs, fmt.Errorf("unknown parameter %q; known: %s", Clip(name), strings.Join(known, ", ")))
		case len(vs) > 1:
			p.errs = append(p.errs, fmt.Errorf("parameter %s is given %d times", name, len(vs)))
		case vs[0] != "":
			p.v[name] = vs[0]
		}
	}
	return p
}

// None checks the raw query string of an endpoint that takes no
// parameters.
func None(raw string) error { return Parse(raw).Err() }

// Err is every problem found so far, nil when there is none.
func (p *Values) Err() error { return errors.Join(p.errs...) }

// Bad records a problem with a parameter found by the caller.
func (p *Values) Bad(name, format string, args ...any) {
	p.errs = append(p.errs, fmt.Errorf("%s: %s", name, fmt.Sprintf(format, args...)))
}

// Has reports whether name was given with a value.
func (p *Values) Has(name string) bool { _, ok := p.v[name]; return ok }

// String is name's value, or def when it is not given.
func (p *Values) String(name, def string) string {
	if s, ok := p.v[name]; ok {
		return s
	}
	return def
}

// OneOf is name's value, which must be one of allowed; def when not given.
func (p *Values) OneOf(name, def string, allowed ...string) string {
	s, ok := p.v[name]
	if !ok {
		return def
	}
	if !slices.Contains(allowed, s) {
		p.Bad(name, "%q is not one of %s", Clip(s), strings.Join(allowed, ", "))
		return def
	}
	return s
}

// Time is name's value as an RFC 3339 time in UTC, or def when not given.
func (p *Values) Time(name string, def time.Time) time.Time {
	s, ok := p.v[name]
	if !ok {
		return def
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		p.Bad(name, "%q is not an RFC 3339 time like 2026-11-28T12:00:00Z", Clip(s))
		return def
	}
	return t.UTC()
}

// Int is name's value as an integer in [lo, hi], or def when not given.
func (p *Values) Int(name string, def, lo, hi int) int {
	s, ok := p.v[name]
	if !ok {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		p.Bad(name, "%q is not a whole number from %d to %d", Clip(s), lo, hi)
		return def
	}
	return n
}

// Float is name's value as a finite number in [lo, hi], or def when not
// given.
func (p *Values) Float(name string, def, lo, hi float64) float64 {
	s, ok := p.v[name]
	if !ok {
		return def
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || !(f >= lo && f <= hi) {
		p.Bad(name, "%q is not a number from %v to %v", Clip(s), lo, hi)
		return def
	}
	return f
}

// Clip shortens what a client sent before it is quoted back in an error,
// at most 64 bytes, never in the middle of a character.
func Clip(s string) string { return Cut(s, 64) }

// Cut shortens s to at most n bytes and an ellipsis, never in the middle
// of a character.
func Cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}
