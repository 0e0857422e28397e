package alarm

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Window is a maintenance window or an expected-offline schedule: alarms of
// the devices it covers are recorded but not raised — they are created
// shelved until the window ends, so they notify nobody and do not escalate,
// yet the trail shows what happened. A window is either one span (From–To)
// or a daily span (Daily, e.g. a shop whose cameras go off every night).
type Window struct {
	Name      string
	Devices   []string
	Agents    []string
	Sites     []string
	Districts []string
	From, To  time.Time // one span; zero with Daily
	Daily     string    // "22:00-06:00" in Location; may cross midnight
	Location  *time.Location
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

// covers reports whether the window applies to a at now, and until when.
func (w Window) covers(a Alarm, now time.Time) (until time.Time, ok bool) {
	if !slices.Contains(w.Devices, a.Device) && !slices.Contains(w.Agents, a.Agent) &&
		!slices.Contains(w.Sites, a.Site) && !slices.Contains(w.Districts, a.District) {
		return time.Time{}, false
	}
	if w.Daily == "" {
		return w.To, !now.Before(w.From) && now.Before(w.To)
	}
	start, end, err := parseDaily(w.Daily)
	if err != nil {
		return time.Time{}, false
	}
	loc := w.Location
	if loc == nil {
		loc = time.UTC
	}
	local := now.In(loc)
	midnight := time.Date(local.Year(), local.Month(), local.Day(), 0, 0, 0, 0, loc)
	at := func(day, minutes int) time.Time {
		return midnight.AddDate(0, 0, day).Add(time.Duration(minutes) * time.Minute)
	}
	// The spans that can contain now: today's, and yesterday's when it
	// crosses midnight.
	for _, day := range []int{-1, 0} {
		from, to := at(day, start), at(day, end)
		if end < start {
			to = at(day+1, end)
		}
		if !now.Before(from) && now.Before(to) {
			return to, true
		}
	}
	return time.Time{}, false
}

// maintain shelves r until the end of the latest window covering it, and
// says which, so the raise is recorded but notifies nobody.
func (e *Engine) maintain(r *record, now time.Time) string {
	var name string
	for _, w := range e.windows {
		if until, ok := w.covers(r.a, now); ok && until.After(r.a.ShelvedUntil) {
			r.a.ShelvedUntil, name = until, w.Name
		}
	}
	if name == "" {
		return ""
	}
	return "in maintenance window " + name
}
