package auth

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/citywatch/citywatch/wire"
)

// Scope is the part of the city an account or token may see and act on:
// everything, or some districts and sites. A device, agent or alarm is in
// scope when its district or its site is listed. The empty Scope sees
// nothing.
type Scope struct {
	All       bool     `json:"all,omitempty"`
	Districts []string `json:"districts,omitempty"`
	Sites     []string `json:"sites,omitempty"`
}

// Everything is the scope of the whole city.
var Everything = Scope{All: true}

// Allows reports whether something in district and site is in scope.
func (s Scope) Allows(district, site string) bool {
	if s.All {
		return true
	}
	return (district != "" && slices.Contains(s.Districts, district)) || (site != "" && slices.Contains(s.Sites, site))
}

// Key identifies the scope: two scopes with equal keys see the same
// things, so what one of them may see can be computed once for both.
func (s Scope) Key() string {
	if s.All {
		return "all"
	}
	return s.String()
}

// String writes the scope in the form ParseScope reads: "all", or
// "district:a,site:b".
func (s Scope) String() string {
	if s.All {
		return "all"
	}
	parts := make([]string, 0, len(s.Districts)+len(s.Sites))
	for _, d := range s.Districts {
		parts = append(parts, "district:"+d)
	}
	for _, x := range s.Sites {
		parts = append(parts, "site:"+x)
	}
	return strings.Join(parts, ",")
}

// Check reports what is wrong with a scope: ids that are not valid, or
// "all" together with a list.
func (s Scope) Check() error {
	var errs []error
	if s.All && (len(s.Districts) > 0 || len(s.Sites) > 0) {
		errs = append(errs, errors.New("scope: all together with districts or sites"))
	}
	// Districts are names ("Old Town", "高新区"), sites ids.
	for _, d := range s.Districts {
		if d == "" || len(d) > wire.MaxNameLen || !utf8.ValidString(d) || strings.ContainsFunc(d, unicode.IsControl) {
			errs = append(errs, fmt.Errorf("scope: district %q is not a district name (1–%d bytes of printable UTF-8)", clip(d), wire.MaxNameLen))
		}
	}
	for _, x := range s.Sites {
		if err := wire.ValidID(x); err != nil {
			errs = append(errs, fmt.Errorf("scope: site: %w", err))
		}
	}
	return errors.Join(errs...)
}

// ParseScope reads "all" or a comma-separated list of district:NAME and
// site:ID (so a district whose name has a comma cannot be named here; the
// API takes lists). The result is sorted and without duplicates.
func ParseScope(text string) (Scope, error) {
	text = strings.TrimSpace(text)
	if text == "all" {
		return Everything, nil
	}
	var s Scope
	for part := range strings.SplitSeq(text, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		kind, id, ok := strings.Cut(part, ":")
		switch {
		case ok && kind == "district":
			s.Districts = append(s.Districts, id)
		case ok && kind == "site":
			s.Sites = append(s.Sites, id)
		default:
			return Scope{}, fmt.Errorf("scope %q: want all, or district:ID and site:ID separated by commas", clip(part))
		}
	}
	s = s.Normal()
	if !s.All && len(s.Districts) == 0 && len(s.Sites) == 0 {
		return Scope{}, errors.New("scope is empty: want all, or district:ID and site:ID separated by commas")
	}
	return s, s.Check()
}

// Normal returns the scope with its lists sorted and deduplicated.
func (s Scope) Normal() Scope {
	s.Districts = slices.Compact(slices.Sorted(slices.Values(s.Districts)))
	s.Sites = slices.Compact(slices.Sorted(slices.Values(s.Sites)))
	return s
}
