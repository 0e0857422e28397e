// Package handover is the shift handover (交接班): the figures of a shift
// window — alarms raised, acknowledged, cleared and still open by severity
// and district, MTTA, the devices that went down and came back or are
// still down, the open work orders — with the notes the outgoing operator
// writes, frozen into a record the incoming operator accepts.
//
// A handover covers a scope: the outgoing operator's. It is seen and
// accepted only by accounts whose scope covers all of it, and nobody
// accepts their own. Writing and accepting are recorded in the audit
// trail (http.go). The report in a record is what the outgoing operator
// handed over, not recomputed: what happened later belongs to the next
// shift.
package handover

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/citywatch/citywatch/hub/alarmstore"
	"github.com/citywatch/citywatch/hub/auth"
	"github.com/citywatch/citywatch/hub/history"
	"github.com/citywatch/citywatch/hub/workorder"
)

// Limits.
const (
	MaxWindow = 7 * 24 * time.Hour // the longest shift window
	MaxNotes  = 8000               // bytes of notes, as of an acceptance note
	// DefaultShift is the window a report covers when nothing says where
	// the shift began: neither the request nor an earlier handover.
	DefaultShift = 12 * time.Hour
)

// Errors.
var (
	ErrNotFound = errors.New("no such handover")
	ErrConflict = errors.New("handover: not allowed in its state")
	ErrBad      = errors.New("handover: bad request")
	// ErrUnavailable is a part of the report the hub cannot make as
	// configured.
	ErrUnavailable = errors.New("handover: unavailable")
)

// Report is what a shift window saw, in a scope.
type Report struct {
	From     time.Time        `json:"from"`
	To       time.Time        `json:"to"`
	Timezone string           `json:"timezone"` // of the console's dates in the printed report
	Alarms   alarmstore.Shift `json:"alarms"`
	Outages  history.Outages  `json:"outages"`
	// Work is the open work orders by state, when the report was made
	// (work orders keep no history by window).
	Work []WorkCount `json:"work"`
}

// WorkCount is how many work orders are in a state.
type WorkCount struct {
	State workorder.State `json:"state"`
	Count int             `json:"count"`
}

// Handover is one shift's handover record.
type Handover struct {
	ID         int64      `json:"id"`
	From       time.Time  `json:"from"`
	To         time.Time  `json:"to"`
	Scope      auth.Scope `json:"scope"`
	Outgoing   string     `json:"outgoing"`
	WrittenAt  time.Time  `json:"written_at"`
	Notes      string     `json:"notes"`
	Incoming   string     `json:"incoming,omitempty"`
	AcceptedAt time.Time  `json:"accepted_at,omitzero"`
	AcceptNote string     `json:"accept_note,omitempty"`
	// Report is the figures as handed over; lists leave it out.
	Report *Report `json:"report,omitempty"`
}

// Accepted reports whether the incoming operator has accepted it.
func (h Handover) Accepted() bool { return !h.AcceptedAt.IsZero() }

// Alarms reports the alarms of a window (alarmstore.Store).
type Alarms interface {
	Shift(ctx context.Context, from, to time.Time, scope auth.Scope) (alarmstore.Shift, error)
}

// Outages reports the device outages of a window (history.History).
type Outages interface {
	Outages(ctx context.Context, from, to time.Time, scope auth.Scope) (history.Outages, error)
}

// Work counts work orders (workorder.Manager).
type Work interface {
	Page(f workorder.Filter, by string, offset, limit int) ([]workorder.Ranked, int)
}

// Options configure a Service.
type Options struct {
	Location *time.Location   // of the printed report's dates; UTC when nil
	Now      func() time.Time // the hub clock; time.Now when nil
}

// Deps are a Service's collaborators; all are required.
type Deps struct {
	Log     *slog.Logger
	Store   *Store
	Alarms  Alarms
	Outages Outages
	Work    Work
}

// Service makes reports and keeps handovers. Safe for concurrent use.
type Service struct {
	opts Options
	deps Deps
	log  *slog.Logger
}

// New checks deps.
func New(opts Options, deps Deps) (*Service, error) {
	switch {
	case deps.Log == nil:
		return nil, errors.New("handover: Deps.Log is required")
	case deps.Store == nil:
		return nil, errors.New("handover: Deps.Store is required")
	case deps.Alarms == nil, deps.Outages == nil, deps.Work == nil:
		return nil, errors.New("handover: Deps.Alarms, Outages and Work are required")
	}
	if opts.Location == nil {
		opts.Location = time.UTC
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Service{opts: opts, deps: deps, log: deps.Log.With("component", "handover")}, nil
}

// Window completes a shift window: to defaults to now, from to where the
// last handover in scope ended (DefaultShift before to when there is
// none, or that one ended at or after to). It refuses windows that end in
// the future, start after they end or are longer than MaxWindow.
func (s *Service) Window(ctx context.Context, from, to time.Time, scope auth.Scope) (time.Time, time.Time, error) {
	now := s.opts.Now().UTC()
	if to.IsZero() {
		to = now
	}
	if from.IsZero() {
		from = to.Add(-DefaultShift)
		last, err := s.deps.Store.LastEnd(ctx, scope)
		if err != nil {
			return from, to, err
		}
		if last.Before(to) && to.Sub(last) <= MaxWindow {
			from = last
		}
	}
	switch {
	case to.After(now.Add(time.Minute)):
		return from, to, fmt.Errorf("%w: the window ends in the future", ErrBad)
	case !from.Before(to):
		return from, to, fmt.Errorf("%w: the window must start before it ends", ErrBad)
	case to.Sub(from) > MaxWindow:
		return from, to, fmt.Errorf("%w: a window is at most %d days", ErrBad, int(MaxWindow.Hours()/24))
	}
	return from.UTC(), to.UTC(), nil
}

// Report computes the figures of [from, to) in scope.
func (s *Service) Report(ctx context.Context, from, to time.Time, scope auth.Scope) (Report, error) {
	r := Report{From: from, To: to, Timezone: s.opts.Location.String(), Work: []WorkCount{}}
	var err error
	if r.Alarms, err = s.deps.Alarms.Shift(ctx, from, to, scope); err != nil {
		return Report{}, fmt.Errorf("handover: alarms: %w", err)
	}
	if r.Outages, err = s.deps.Outages.Outages(ctx, from, to, scope); err != nil {
		return Report{}, fmt.Errorf("handover: outages: %w", err)
	}
	for _, st := range workorder.States {
		if st.Terminal() {
			continue
		}
		_, n := s.deps.Work.Page(workorder.Filter{States: []workorder.State{st}, Keep: scope.Allows}, workorder.SortRank, 0, 1)
		r.Work = append(r.Work, WorkCount{State: st, Count: n})
	}
	return r, nil
}

// Submit writes the outgoing operator's handover of [from, to) in their
// scope, with the report as it stands now.
func (s *Service) Submit(ctx context.Context, who string, scope auth.Scope, from, to time.Time, notes string) (Handover, error) {
	if err := text(notes); err != nil {
		return Handover{}, err
	}
	from, to, err := s.Window(ctx, from, to, scope)
	if err != nil {
		return Handover{}, err
	}
	r, err := s.Report(ctx, from, to, scope)
	if err != nil {
		return Handover{}, err
	}
	h := Handover{From: from, To: to, Scope: scope, Outgoing: who, WrittenAt: s.opts.Now().UTC(), Notes: notes, Report: &r}
	if h.ID, err = s.deps.Store.insert(ctx, h); err != nil {
		return Handover{}, err
	}
	s.log.Info("shift handed over", "id", h.ID, "by", who, "from", from, "to", to)
	return h, nil
}

// Accept records that who, the incoming operator, took the shift over.
// Only one person accepts a handover, never its author.
func (s *Service) Accept(ctx context.Context, id int64, who string, scope auth.Scope, note string) (Handover, error) {
	if err := text(note); err != nil {
		return Handover{}, err
	}
	h, err := s.Get(ctx, id, scope)
	if err != nil {
		return Handover{}, err
	}
	switch {
	case h.Accepted():
		return h, fmt.Errorf("%w: accepted already by %s", ErrConflict, h.Incoming)
	case h.Outgoing == who:
		return h, fmt.Errorf("%w: the outgoing operator cannot accept their own handover", ErrConflict)
	}
	at := s.opts.Now().UTC()
	if err := s.deps.Store.accept(ctx, id, who, note, at); err != nil {
		return h, err
	}
	h.Incoming, h.AcceptedAt, h.AcceptNote = who, at, note
	s.log.Info("shift taken over", "id", id, "by", who, "from", h.Outgoing)
	return h, nil
}

// Get returns a handover with its report, if scope covers it.
func (s *Service) Get(ctx context.Context, id int64, scope auth.Scope) (Handover, error) {
	h, err := s.deps.Store.get(ctx, id)
	if err != nil {
		return Handover{}, err
	}
	if !Covers(scope, h.Scope) {
		return Handover{}, fmt.Errorf("%w: %d", ErrNotFound, id)
	}
	return h, nil
}

// List returns the latest handovers scope covers, newest first, without
// their reports.
func (s *Service) List(ctx context.Context, scope auth.Scope, limit int) ([]Handover, error) {
	return s.deps.Store.list(ctx, func(h auth.Scope) bool { return Covers(scope, h) }, limit)
}

// Covers reports whether reader sees everything in scope s.
func Covers(reader, s auth.Scope) bool {
	if reader.All {
		return true
	}
	if s.All {
		return false
	}
	for _, d := range s.Districts {
		if !slices.Contains(reader.Districts, d) {
			return false
		}
	}
	for _, x := range s.Sites {
		if !slices.Contains(reader.Sites, x) {
			return false
		}
	}
	return len(s.Districts)+len(s.Sites) > 0 || reader.Key() == s.Key()
}

func text(s string) error {
	switch {
	case len(s) > MaxNotes:
		return fmt.Errorf("%w: notes are at most %d bytes", ErrBad, MaxNotes)
	case !utf8.ValidString(s):
		return fmt.Errorf("%w: notes are not UTF-8", ErrBad)
	case strings.ContainsRune(s, 0):
		return fmt.Errorf("%w: notes contain a NUL", ErrBad)
	}
	return nil
}
