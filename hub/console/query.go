package console

import (
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/citywatch/citywatch/hub/auth"
	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/wire"
)

// badRequest is an error whose text is meant for the API client.
type badRequest string

func (e badRequest) Error() string { return string(e) }

func badf(format string, args ...any) error { return badRequest(fmt.Sprintf(format, args...)) }

// listQuery is a parsed filter for /api/devices or /api/agents. Within one
// parameter repeated values are alternatives (status=offline&status=unreachable);
// different parameters must all match. Empty values are ignored, so a form
// with an unset field can be sent as it is.
type listQuery struct {
	districts []string
	sites     []string
	agents    []string
	kinds     []wire.DeviceKind
	statuses  []wire.Status
	q         string    // lower case
	since     time.Time // zero: any; else changed (status, or alarm) at or after it
	limit     int       // 0: no limit
	offset    int
	after     string // devices: the page starts after this id
}

// listParams says which parameters a list endpoint accepts and which
// statuses make sense for what it lists.
type listParams struct {
	names    []string // sorted, for the error message
	statuses []wire.Status
}

var (
	deviceParams = listParams{
		names: []string{"after", "agent", "district", "kind", "limit", "offset", "q", "since", "site", "status"},
		statuses: []wire.Status{wire.StatusOnline, wire.StatusDegraded, wire.StatusOffline,
			wire.StatusUnknown, wire.StatusUnreachable},
	}
	agentParams = listParams{
		names:    []string{"district", "limit", "offset", "q", "since", "site", "status"},
		statuses: []wire.Status{wire.StatusOnline, wire.StatusOffline, wire.StatusUnknown},
	}
	deviceKinds = []wire.DeviceKind{wire.KindCamera, wire.KindSensor}
)

// maxOffset keeps offset arithmetic far from overflow; no fleet is near it.
const maxOffset = 1 << 30

// parseList parses a raw query string. Unknown parameters are refused
// rather than ignored: a misspelt filter would otherwise silently return
// the whole fleet.
func parseList(raw string, p listParams) (listQuery, error) {
	vals, err := url.ParseQuery(raw)
	if err != nil {
		return listQuery{}, badf("malformed query: %v", err)
	}
	var lq listQuery
	for _, name := range sortedKeys(vals) {
		if !slices.Contains(p.names, name) {
			return listQuery{}, badf("unknown parameter %q; allowed: %s", clip(name), strings.Join(p.names, ", "))
		}
		if len(vals[name]) > 1 && (name == "q" || name == "limit" || name == "offset" || name == "since" || name == "after") {
			return listQuery{}, badf("%s given more than once", name)
		}
		for _, v := range vals[name] {
			if v == "" {
				continue
			}
			if err := lq.set(name, v, p); err != nil {
				return listQuery{}, err
			}
		}
	}
	if lq.after != "" && lq.offset > 0 {
		return listQuery{}, badf("after and offset cannot be combined: page with after alone")
	}
	return lq, nil
}

func (lq *listQuery) set(name, v string, p listParams) error {
	switch name {
	case "district":
		if len(v) > wire.MaxNameLen || !utf8.ValidString(v) {
			return badf("district must be valid UTF-8 of at most %d bytes", wire.MaxNameLen)
		}
		lq.districts = append(lq.districts, v)
	case "site", "agent", "after":
		if err := wire.ValidID(v); err != nil {
			return badf("%s: %v", name, err)
		}
		switch name {
		case "site":
			lq.sites = append(lq.sites, v)
		case "agent":
			lq.agents = append(lq.agents, v)
		default:
			lq.after = v
		}
	case "kind":
		k := wire.DeviceKind(v)
		if !slices.Contains(deviceKinds, k) {
			return badf("kind %q is not one of %s", clip(v), join(deviceKinds))
		}
		lq.kinds = append(lq.kinds, k)
	case "status":
		s := wire.Status(v)
		if !slices.Contains(p.statuses, s) {
			return badf("status %q is not one of %s", clip(v), join(p.statuses))
		}
		lq.statuses = append(lq.statuses, s)
	case "q":
		if len(v) > wire.MaxNameLen || !utf8.ValidString(v) {
			return badf("q must be valid UTF-8 of at most %d bytes", wire.MaxNameLen)
		}
		lq.q = strings.ToLower(v)
	case "since":
		t, err := parseTime(v, time.Now())
		if err != nil {
			return err
		}
		lq.since = t
	case "limit", "offset":
		least := 0
		if name == "limit" {
			least = 1 // no limit is said by leaving it out
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < least || n > maxOffset {
			return badf("%s %q is not an integer from %d to %d", name, clip(v), least, maxOffset)
		}
		if name == "limit" {
			lq.limit = n
		} else {
			lq.offset = n
		}
	}
	return nil
}

// page returns the bounds of the requested page within n results.
func (lq *listQuery) page(n int) (lo, hi int) {
	lo = min(lq.offset, n)
	hi = n
	if lq.limit > 0 {
		hi = min(lo+lq.limit, n)
	}
	return lo, hi
}

// deviceQuery is the registry's query for lq as scope sees it: a scoped
// account's query is confined to its districts and sites by the same
// indexes that serve the filters.
func (lq *listQuery) deviceQuery(scope auth.Scope) fleet.DeviceQuery {
	q := fleet.DeviceQuery{
		DeviceFilter: fleet.DeviceFilter{
			Districts: lq.districts, Sites: lq.sites, Agents: lq.agents, Kinds: lq.kinds, Statuses: lq.statuses,
			Search: lq.q, Since: lq.since,
		},
		After: lq.after, Offset: lq.offset, Limit: lq.limit,
	}
	if !scope.All {
		q.Within = &fleet.Area{Districts: scope.Districts, Sites: scope.Sites}
	}
	return q
}

func (lq *listQuery) matchAgent(a *fleet.Agent) bool {
	return anyOf(lq.districts, a.District) && anyOf(lq.sites, a.Site) && anyOf(lq.statuses, a.Status) &&
		!a.Since.Before(lq.since) && (lq.search(a.ID, a.Site, a.SiteName) ||
		lq.q != "" && lq.search(slices.Collect(maps.Values(a.SiteNames))...))
}

// parseTime reads a time parameter: RFC 3339, or a duration back from now
// ("90m", "24h").
func parseTime(v string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return time.Time{}, badf("%q is neither an RFC 3339 time nor a positive duration back from now (90m, 24h)", clip(v))
	}
	return now.Add(-d), nil
}

// search reports whether q occurs in any field, ignoring case.
func (lq *listQuery) search(fields ...string) bool {
	if lq.q == "" {
		return true
	}
	for _, f := range fields {
		if containsFold(f, lq.q) {
			return true
		}
	}
	return false
}

// containsFold reports whether lower, which is in lower case, occurs in s
// ignoring case. Unlike lower-casing s it allocates nothing, which matters
// when a search runs over 100,000 devices.
func containsFold(s, lower string) bool {
	for i := 0; i+len(lower) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(lower)], lower) {
			return true
		}
	}
	return false
}

// anyOf reports whether v is one of want; no wants match everything.
func anyOf[T comparable](want []T, v T) bool {
	return len(want) == 0 || slices.Contains(want, v)
}

// parseSince reads the since parameter of /api/devices/{id}: a duration
// back from now ("90m", "24h") or an RFC 3339 time. History further back
// than maxHistory is refused, to keep one request from scanning months.
func parseSince(raw string, now time.Time) (time.Time, error) {
	vals, err := url.ParseQuery(raw)
	if err != nil {
		return time.Time{}, badf("malformed query: %v", err)
	}
	for name := range vals {
		if name != "since" {
			return time.Time{}, badf("unknown parameter %q; allowed: since", clip(name))
		}
	}
	if len(vals["since"]) > 1 {
		return time.Time{}, badf("since given more than once")
	}
	v := vals.Get("since")
	if v == "" {
		return now.Add(-defaultHistory), nil
	}
	since, err := time.Parse(time.RFC3339, v)
	if err != nil {
		d, derr := time.ParseDuration(v)
		if derr != nil || d <= 0 {
			return time.Time{}, badf("since %q is neither a positive duration (90m, 24h) nor an RFC 3339 time", clip(v))
		}
		since = now.Add(-d)
	}
	if now.Sub(since) > maxHistory {
		return time.Time{}, badf("since reaches back more than %d days", maxHistoryDays)
	}
	return since, nil
}

// History windows for /api/devices/{id}.
const (
	defaultHistory = time.Hour
	maxHistoryDays = 31
	maxHistory     = maxHistoryDays * 24 * time.Hour
)

func sortedKeys(v url.Values) []string {
	keys := make([]string, 0, len(v))
	for k := range v {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func join[T ~string](vs []T) string {
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = string(v)
	}
	return strings.Join(s, ", ")
}

// clip shortens what a client sent before it is echoed in an error.
func clip(s string) string {
	const n = 64
	if len(s) <= n {
		return s
	}
	for i := n; i > 0; i-- {
		if utf8.RuneStart(s[i]) {
			return s[:i] + "…"
		}
	}
	return s[:n] + "…"
}
