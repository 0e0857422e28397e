// Package maintenance is planned downtime: windows (one span) and daily
// schedules (a shop whose cameras go off every night) during which devices
// are expected offline. The alarm engine records, rather than raises, the
// alarms of what a window covers; availability reports and the coverage
// ledger count its time as planned, apart from outages. One implementation
// of "is this device in a window now, and from when to when" serves all.
package maintenance

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Window is a maintenance window or an expected-offline schedule.
type Window struct {
	Name string
	// ApprovedBy is who set the window (a name, a change ticket): reports
	// show it beside the time it excluded.
	ApprovedBy string
	Devices    []string
	Agents     []string
	Sites      []string
	Districts  []string
	From, To   time.Time // one span; zero with Daily
	Daily      string    // "22:00-06:00" in Location; may cross midnight
	Location   *time.Location
}

// Subject is what a window may cover: a device, or an agent (whose Device
// is empty).
type Subject struct {
	Device, Agent, Site, District string
}

// Validate reports what is wrong with w.
func (w Window) Validate() error {
	var errs []error
	if w.Name == "" {
		errs = append(errs, errors.New("name is missing"))
	}
	if len(w.Devices)+len(w.Agents)+len(w.Sites)+len(w.Districts) == 0 {
		errs = append(errs, errors.New("covers nothing: list devices, agents, sites or districts"))
	}
	switch {
	case w.Daily != "" && (!w.From.IsZero() || !w.To.IsZero()):
		errs = append(errs, errors.New("give either daily or from/to, not both"))
	case w.Daily != "":
		if _, _, err := parseDaily(w.Daily); err != nil {
			errs = append(errs, err)
		}
	case w.From.IsZero() || w.To.IsZero() || !w.From.Before(w.To):
		errs = append(errs, errors.New("needs from before to, or daily"))
	}
	return errors.Join(errs...)
}

// parseDaily reads "HH:MM-HH:MM" into minutes after midnight.
func parseDaily(s string) (start, end int, err error) {
	a, b, ok := strings.Cut(s, "-")
	if ok {
		if start, err = clockMinutes(a); err == nil {
			end, err = clockMinutes(b)
		}
	}
	if !ok || err != nil || start == end {
		return 0, 0, fmt.Errorf("daily %q: want HH:MM-HH:MM, two different times", s)
	}
	return start, end, nil
}

func clockMinutes(s string) (int, error) {
	h, m, ok := strings.Cut(strings.TrimSpace(s), ":")
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if !ok || err1 != nil || err2 != nil || hh < 0 || hh > 23 || mm < 0 || mm > 59 {
		return 0, fmt.Errorf("%q is not HH:MM", s)
	}
	return hh*60 + mm, nil
}

// Applies reports whether w names s (by device, agent, site or district).
func (w Window) Applies(s Subject) bool {
	return (s.Device != "" && slices.Contains(w.Devices, s.Device)) || slices.Contains(w.Agents, s.Agent) ||
		slices.Contains(w.Sites, s.Site) || slices.Contains(w.Districts, s.District)
}

// Span is a time range [From, To).
type Span struct{ From, To time.Time }

// Covers reports whether w applies to s at t, and until when.
func (w Window) Covers(s Subject, t time.Time) (until time.Time, ok bool) {
	if !w.Applies(s) {
		return time.Time{}, false
	}
	for _, sp := range w.spans(t.Add(-48*time.Hour), t.Add(48*time.Hour)) {
		if !t.Before(sp.From) && t.Before(sp.To) {
			return sp.To, true
		}
	}
	return time.Time{}, false
}

// Spans returns when w covers s within [from, to), in order, clipped to
// the range.
func (w Window) Spans(s Subject, from, to time.Time) []Span {
	if !w.Applies(s) || !from.Before(to) {
		return nil
	}
	var out []Span
	for _, sp := range w.spans(from, to) {
		sp.From, sp.To = later(sp.From, from), earlier(sp.To, to)
		if sp.From.Before(sp.To) {
			out = append(out, sp)
		}
	}
	return out
}

// spans returns w's spans that overlap [from, to), unclipped.
func (w Window) spans(from, to time.Time) []Span {
	if w.Daily == "" {
		if w.From.Before(to) && from.Before(w.To) {
			return []Span{{w.From, w.To}}
		}
		return nil
	}
	start, end, err := parseDaily(w.Daily)
	if err != nil {
		return nil
	}
	loc := w.Location
	if loc == nil {
		loc = time.UTC
	}
	l := from.In(loc)
	// From the day before: yesterday's span may cross midnight into from.
	day := time.Date(l.Year(), l.Month(), l.Day(), 0, 0, 0, 0, loc).AddDate(0, 0, -1)
	var out []Span
	for ; day.Before(to); day = day.AddDate(0, 0, 1) {
		sf := day.Add(time.Duration(start) * time.Minute)
		st := day.Add(time.Duration(end) * time.Minute)
		if end < start {
			st = day.AddDate(0, 0, 1).Add(time.Duration(end) * time.Minute)
		}
		if sf.Before(to) && from.Before(st) {
			out = append(out, Span{sf, st})
		}
	}
	return out
}

// Windows is a set of windows.
type Windows []Window

// Spans returns when any window covers s within [from, to): merged,
// ordered, non-overlapping, each with the names of the windows and who
// approved them.
func (ws Windows) Spans(s Subject, from, to time.Time) []Named {
	var all []Named
	for _, w := range ws {
		for _, sp := range w.Spans(s, from, to) {
			all = append(all, Named{Span: sp, Names: []string{w.Name}, ApprovedBy: nonEmpty(w.ApprovedBy)})
		}
	}
	slices.SortFunc(all, func(a, b Named) int { return a.From.Compare(b.From) })
	var out []Named
	for _, n := range all {
		if k := len(out) - 1; k >= 0 && !n.From.After(out[k].To) {
			out[k].To = later(out[k].To, n.To)
			out[k].Names = appendNew(out[k].Names, n.Names...)
			out[k].ApprovedBy = appendNew(out[k].ApprovedBy, n.ApprovedBy...)
			continue
		}
		out = append(out, n)
	}
	return out
}

// Schedule is the hub's windows now: every part of the hub reads the same
// set, and a configuration reload replaces it whole. Safe for concurrent
// use; a nil Schedule has no windows.
type Schedule struct{ ws atomic.Pointer[Windows] }

// NewSchedule returns a Schedule of ws, which must be valid.
func NewSchedule(ws Windows) (*Schedule, error) {
	s := new(Schedule)
	return s, s.Set(ws)
}

// MustSchedule is NewSchedule for windows known to be valid (tests,
// literals); it panics on invalid ones, as regexp.MustCompile does.
func MustSchedule(ws ...Window) *Schedule {
	s, err := NewSchedule(ws)
	if err != nil {
		panic(err)
	}
	return s
}

// Set replaces the windows, or changes nothing and says what is wrong.
func (s *Schedule) Set(ws Windows) error {
	var errs []error
	for i, w := range ws {
		if err := w.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("maintenance window %d (%s): %w", i, w.Name, err))
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	ws = slices.Clone(ws)
	s.ws.Store(&ws)
	return nil
}

// Windows returns the current windows; callers must not modify them.
func (s *Schedule) Windows() Windows {
	if s == nil {
		return nil
	}
	if p := s.ws.Load(); p != nil {
		return *p
	}
	return nil
}

// Named is a span some windows cover, with their names and approvers.
type Named struct {
	Span
	Names      []string
	ApprovedBy []string
}

func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

func appendNew(list []string, more ...string) []string {
	for _, m := range more {
		if !slices.Contains(list, m) {
			list = append(list, m)
		}
	}
	return list
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
