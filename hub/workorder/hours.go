package workorder

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Hours are business hours: with them, deadlines count only the time
// inside them (a P3 fix in 24 h is three working days of 8 h). A nil
// *Hours counts every hour.
type Hours struct {
	Days     []time.Weekday
	From, To time.Duration // since local midnight; From < To
	Loc      *time.Location
}

// ParseHours reads business hours: days as "mon,tue,wed,thu,fri", a
// window "08:30-17:30" and an IANA zone.
func ParseHours(days, window, zone string) (*Hours, error) {
	names := map[string]time.Weekday{"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
		"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday}
	h := &Hours{}
	var errs []error
	for _, d := range strings.Split(days, ",") {
		wd, ok := names[strings.ToLower(strings.TrimSpace(d))]
		if !ok {
			errs = append(errs, fmt.Errorf("day %q is not one of mon … sun", d))
			continue
		}
		if !slices.Contains(h.Days, wd) {
			h.Days = append(h.Days, wd)
		}
	}
	from, to, ok := strings.Cut(window, "-")
	clock := func(s string) (time.Duration, error) {
		t, err := time.Parse("15:04", strings.TrimSpace(s))
		return time.Duration(t.Hour())*time.Hour + time.Duration(t.Minute())*time.Minute, err
	}
	var err1, err2 error
	h.From, err1 = clock(from)
	h.To, err2 = clock(to)
	if !ok || err1 != nil || err2 != nil || h.From >= h.To {
		errs = append(errs, fmt.Errorf("hours %q are not HH:MM-HH:MM within one day", window))
	}
	var err error
	if h.Loc, err = time.LoadLocation(zone); err != nil {
		errs = append(errs, fmt.Errorf("time zone %q: %v", zone, err))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("workorder: business hours: %w", err)
	}
	return h, nil
}

// maxDays bounds the walk of add and between: no deadline is ten years out.
const maxDays = 3660

// window is day's business window, or ok false on a day off.
func (h *Hours) window(day time.Time) (start, end time.Time, ok bool) {
	if !slices.Contains(h.Days, day.Weekday()) {
		return time.Time{}, time.Time{}, false
	}
	y, m, d := day.Date()
	midnight := time.Date(y, m, d, 0, 0, 0, 0, h.Loc)
	return midnight.Add(h.From), midnight.Add(h.To), true
}

func nextDay(t time.Time, loc *time.Location) time.Time {
	y, m, d := t.In(loc).Date()
	return time.Date(y, m, d+1, 0, 0, 0, 0, loc)
}

// add is t moved on by d of business time.
func (h *Hours) add(t time.Time, d time.Duration) time.Time {
	if h == nil || len(h.Days) == 0 {
		return t.Add(d)
	}
	cur := t.In(h.Loc)
	for range maxDays {
		if start, end, ok := h.window(cur); ok && cur.Before(end) {
			if cur.Before(start) {
				cur = start
			}
			avail := end.Sub(cur)
			if d <= avail {
				return cur.Add(d).In(t.Location())
			}
			d -= avail
		}
		cur = nextDay(cur, h.Loc)
	}
	return cur.Add(d).In(t.Location())
}

// between is the business time within [a, b).
func (h *Hours) between(a, b time.Time) time.Duration {
	if !a.Before(b) {
		return 0
	}
	if h == nil || len(h.Days) == 0 {
		return b.Sub(a)
	}
	var sum time.Duration
	cur := a.In(h.Loc)
	for range maxDays {
		if !cur.Before(b) {
			break
		}
		if start, end, ok := h.window(cur); ok {
			lo, hi := start, end // the window, cut to [cur, b)
			if cur.After(lo) {
				lo = cur
			}
			if b.Before(hi) {
				hi = b
			}
			if lo.Before(hi) {
				sum += hi.Sub(lo)
			}
		}
		cur = nextDay(cur, h.Loc)
	}
	return sum
}
