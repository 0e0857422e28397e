package param

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestParse(t *testing.T) {
	p := Parse("from=2026-01-02T03:04:05%2B08:00&group=site&limit=7&x=1&to=yesterday&limit2=&cell=30", "from", "to", "group", "limit", "limit2", "cell")
	if got := p.Time("from", time.Time{}); !got.Equal(time.Date(2026, 1, 1, 19, 4, 5, 0, time.UTC)) || got.Location() != time.UTC {
		t.Errorf("from %v", got)
	}
	if g := p.OneOf("group", "district", "district", "site"); g != "site" {
		t.Errorf("group %q", g)
	}
	if n := p.Int("limit", 100, 1, 10); n != 7 {
		t.Errorf("limit %d", n)
	}
	if p.Has("limit2") || p.Int("limit2", 3, 1, 10) != 3 {
		t.Error("an empty value counted as given")
	}
	if f := p.Float("cell", 25, 5, 20); f != 25 {
		t.Errorf("out-of-range float %v", f)
	}
	p.Time("to", time.Time{})
	err := p.Err()
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{`unknown parameter "x"`, `to: "yesterday" is not an RFC 3339 time`, `cell: "30" is not a number from 5 to 20`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if err := Parse("a=1&a=2", "a").Err(); err == nil || !strings.Contains(err.Error(), "given 2 times") {
		t.Errorf("repeat: %v", err)
	}
	if err := Parse("a=%zz", "a").Err(); err == nil {
		t.Error("a malformed query passed")
	}
	if p := Parse("g=x", "g"); p.OneOf("g", "a", "a", "b") != "a" || p.Err() == nil {
		t.Error("a value outside the allowed set passed")
	}
	if err := Parse("", "a").Err(); err != nil {
		t.Errorf("empty query: %v", err)
	}
}

// An error quotes at most 64 bytes of what was sent, cut between
// characters.
func TestClip(t *testing.T) {
	long := strings.Repeat("a", 63) + "区区"
	for _, tt := range []struct{ in, want string }{
		{"short", "short"},
		{strings.Repeat("b", 64), strings.Repeat("b", 64)},
		{strings.Repeat("b", 65), strings.Repeat("b", 64) + "…"},
		{long, strings.Repeat("a", 63) + "…"},
	} {
		if got := Clip(tt.in); got != tt.want || !utf8.ValidString(got) {
			t.Errorf("Clip(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
