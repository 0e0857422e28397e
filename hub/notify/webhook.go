package notify

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"sort"
	"time"

	"github.com/citywatch/citywatch/hub/alarm"
)

// Defaults for the zero values of Webhook. They favour getting the message
// through an outage of a few minutes (8 attempts with backoff capped at 60 s
// span roughly four minutes) over freeing the queue quickly.
const (
	DefaultTimeout        = 5 * time.Second
	DefaultMaxAttempts    = 8
	DefaultInitialBackoff = time.Second
	DefaultMaxBackoff     = 60 * time.Second
	DefaultQueueLen       = 10_000
)

// DefaultKinds are the events a hook gets when Kinds is empty: what a
// person or a ticket needs (it started, it got worse, it ended), not the
// chatter of acks and repeats.
var DefaultKinds = []alarm.EventKind{alarm.EventRaise, alarm.EventEscalate, alarm.EventClear}

// Work-order events a hook may ask for (they are never in DefaultKinds):
// an order opened, closed (verified, recovered or cancelled), or past a
// deadline — what a ticketing system mirrors.
const (
	KindWorkOrderOpen   alarm.EventKind = "workorder.open"
	KindWorkOrderClose  alarm.EventKind = "workorder.close"
	KindWorkOrderBreach alarm.EventKind = "workorder.breach"
)

var knownKinds = []alarm.EventKind{alarm.EventRaise, alarm.EventUpdate, alarm.EventClear, alarm.EventEscalate, alarm.EventFlap,
	KindWorkOrderOpen, KindWorkOrderClose, KindWorkOrderBreach}

// Webhook is one outbound JSON webhook. Zero values take the defaults above.
type Webhook struct {
	Name string // metric label and log attribute; unique
	URL  string // http or https
	// Headers are added to every request, typically Authorization. Their
	// values are never logged.
	Headers     map[string]string
	MinSeverity alarm.Severity    // zero: every severity
	Kinds       []alarm.EventKind // empty: DefaultKinds
	// Tiers are the escalation tiers this hook serves: tier 0 is the first
	// notification, tier n the n-th escalation (alarm.Alarm.Escalations). An
	// escalate event goes only to hooks serving the tier just reached; every
	// other event goes to hooks serving any tier the alarm has reached, so
	// whoever was told about an alarm also hears how it ends. Empty: [0].
	Tiers          []int
	Timeout        time.Duration // per attempt
	MaxAttempts    int           // first attempt included
	InitialBackoff time.Duration // before the first retry; doubles each retry
	MaxBackoff     time.Duration // cap on the doubling (before jitter)
	QueueLen       int           // events waiting for this hook; more are dropped
}

// withDefaults fills the zero values.
func (w Webhook) withDefaults() Webhook {
	if len(w.Kinds) == 0 {
		w.Kinds = slices.Clone(DefaultKinds)
	}
	if len(w.Tiers) == 0 {
		w.Tiers = []int{0}
	}
	if w.Timeout == 0 {
		w.Timeout = DefaultTimeout
	}
	if w.MaxAttempts == 0 {
		w.MaxAttempts = DefaultMaxAttempts
	}
	if w.InitialBackoff == 0 {
		w.InitialBackoff = DefaultInitialBackoff
	}
	if w.MaxBackoff == 0 {
		w.MaxBackoff = DefaultMaxBackoff
	}
	if w.QueueLen == 0 {
		w.QueueLen = DefaultQueueLen
	}
	return w
}

// Validate reports every problem of the hooks at once, so an operator fixes
// the config in one pass. Zero values are valid (they take defaults).
func Validate(hooks []Webhook) error {
	var errs []error
	seen := make(map[string]bool)
	for i, w := range hooks {
		label := fmt.Sprintf("webhook %d", i)
		if w.Name != "" {
			label = fmt.Sprintf("webhook %q", w.Name)
		}
		for _, err := range w.problems() {
			errs = append(errs, fmt.Errorf("%s: %w", label, err))
		}
		if w.Name != "" && seen[w.Name] {
			errs = append(errs, fmt.Errorf("%s: duplicate name", label))
		}
		seen[w.Name] = true
	}
	if len(errs) > 0 {
		return fmt.Errorf("notify: %d problem(s):\n%w", len(errs), errors.Join(errs...))
	}
	return nil
}

func (w Webhook) problems() []error {
	var errs []error
	if w.Name == "" {
		errs = append(errs, errors.New("name is required"))
	}
	if u, err := url.Parse(w.URL); err != nil || w.URL == "" {
		errs = append(errs, errors.New("url must be an absolute http or https URL"))
	} else if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("url %s: must be an absolute http or https URL", redactURL(w.URL)))
	}
	for k := range w.Headers {
		if k == "" {
			errs = append(errs, errors.New("header with an empty name"))
		}
	}
	if w.MinSeverity != 0 && !w.MinSeverity.Valid() {
		errs = append(errs, fmt.Errorf("min severity %d is not a severity", int(w.MinSeverity)))
	}
	for _, k := range w.Kinds {
		if !slices.Contains(knownKinds, k) {
			errs = append(errs, fmt.Errorf("unknown event kind %q", k))
		}
	}
	for _, t := range w.Tiers {
		if t < 0 {
			errs = append(errs, fmt.Errorf("tier %d is negative", t))
		}
	}
	if w.Timeout < 0 {
		errs = append(errs, errors.New("timeout is negative"))
	}
	if w.MaxAttempts < 0 {
		errs = append(errs, errors.New("max attempts is negative"))
	}
	if w.InitialBackoff < 0 || w.MaxBackoff < 0 {
		errs = append(errs, errors.New("backoff is negative"))
	}
	if w.InitialBackoff > 0 && w.MaxBackoff > 0 && w.MaxBackoff < w.InitialBackoff {
		errs = append(errs, errors.New("max backoff is below initial backoff"))
	}
	if w.QueueLen < 0 {
		errs = append(errs, errors.New("queue length is negative"))
	}
	return errs
}

// match is the filter stage: does this hook want the event?
func (w Webhook) match(ev alarm.Event) bool {
	if ev.Alarm.Severity < w.MinSeverity || !slices.Contains(w.Kinds, ev.Kind) {
		return false
	}
	tier := ev.Alarm.Escalations
	if ev.Kind == alarm.EventEscalate {
		// Escalation is a new notification to the next tier only; the
		// earlier tiers have already been told and not reacted.
		return slices.Contains(w.Tiers, tier)
	}
	return slices.ContainsFunc(w.Tiers, func(t int) bool { return t <= tier })
}

// LogValue keeps secrets out of logs: header values are dropped (only the
// names are shown) and the URL loses its user info and query, where tokens
// usually hide.
func (w Webhook) LogValue() slog.Value {
	names := make([]string, 0, len(w.Headers))
	for k := range w.Headers {
		names = append(names, k)
	}
	sort.Strings(names)
	return slog.GroupValue(
		slog.String("name", w.Name),
		slog.String("url", redactURL(w.URL)),
		slog.Any("headers", names),
	)
}

// redactURL returns scheme://host/path, without user info, query or
// fragment.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable url)"
	}
	r := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}
	return r.String()
}
