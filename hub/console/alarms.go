package console

import (
	"cmp"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/citywatch/citywatch/hub/alarm"
	"github.com/citywatch/citywatch/hub/audit"
	"github.com/citywatch/citywatch/hub/auth"
	"github.com/citywatch/citywatch/hub/coverage"
	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/wire"
)

// Alarms is what the console reads of the alarms and how operators act on
// them (hub/alarm's Engine, or hub/alarmview's View in a cluster).
// Actions fail with alarm.ErrNotFound, alarm.ErrInvalid or
// alarm.ErrUnavailable, which the API answers with 404, 409 and 503.
type Alarms interface {
	Alarms(alarm.Filter) []alarm.Alarm
	Alarm(id string) (alarm.Alarm, []alarm.Transition, bool)
	Children(id string) []alarm.Child
	Ack(id, who, note string) error
	Assign(id, who, to, note string) error
	Shelve(id, who string, until time.Time, note string) error
	Unshelve(id, who, note string) error
	Clear(id, who, note string) error
}

// AlarmCounts counts alarms by severity.
type AlarmCounts struct {
	Critical int `json:"critical"`
	Major    int `json:"major"`
	Minor    int `json:"minor"`
	Warning  int `json:"warning"`
}

func (c *AlarmCounts) add(s alarm.Severity) {
	switch s {
	case alarm.Critical:
		c.Critical++
	case alarm.Major:
		c.Major++
	case alarm.Minor:
		c.Minor++
	case alarm.Warning:
		c.Warning++
	}
}

// AlarmList is the answer of GET /api/alarms.
type AlarmList struct {
	Alarms []alarm.Alarm `json:"alarms"` // highest priority first
	Total  int           `json:"total"`  // matching alarms, before limit and offset
	Counts AlarmCounts   `json:"counts"` // of the matching alarms, before limit and offset
}

// AlarmDetail is the answer of GET /api/alarms/{id}.
type AlarmDetail struct {
	Alarm   alarm.Alarm        `json:"alarm"`
	History []alarm.Transition `json:"history"` // oldest first
	// Children are what a root-cause alarm explains (devices of a failed
	// switch, agents of a failed power feed); omitted for other alarms.
	Children []alarm.Child `json:"children,omitempty"`
	// Cameras are, for an alarm of a sensor, the cameras that look at it
	// (nearest first), or the nearest ones when none does: alarm → verify
	// by video → act.
	Cameras []coverage.Camera `json:"cameras,omitempty"`
}

// relatedCameras is how many cameras a sensor alarm suggests.
const relatedCameras = 4

// AlarmReply is the answer of an alarm action: the alarm after it.
type AlarmReply struct {
	Alarm alarm.Alarm `json:"alarm"`
}

// Limits of what an operator's action may carry.
const (
	maxActionBody = 16 << 10
	maxWho        = 64
	maxNote       = 1000
)

func (s *Server) alarmRoutes() []auth.Route {
	rs := []auth.Route{
		{Method: http.MethodGet, Path: "/api/alarms", Perm: auth.AlarmRead, Handler: http.HandlerFunc(s.listAlarms)},
		{Method: http.MethodGet, Path: "/api/alarms/{id}", Perm: auth.AlarmRead, Handler: noParams(s.getAlarm)},
	}
	type action struct {
		name string
		perm auth.Permission
		h    actionHandlers
	}
	with := func(name string, perm auth.Permission, h actionHandlers) action { return action{name, perm, h} }
	for _, r := range []action{
		with("ack", auth.AlarmAck, alarmAction(s, "alarm.ack", func(id, who string, b actionBody) error { return s.alarms.Ack(id, who, b.Note) })),
		with("assign", auth.AlarmAssign, alarmAction(s, "alarm.assign", func(id, who string, b assignBody) error {
			return s.alarms.Assign(id, who, b.To, b.Note)
		})),
		with("shelve", auth.AlarmShelve, alarmAction(s, "alarm.shelve", func(id, who string, b shelveBody) error {
			until, err := b.until(time.Now(), s.cfg.MaxShelve)
			if err != nil {
				return err
			}
			return s.alarms.Shelve(id, who, until, b.Note)
		})),
		with("unshelve", auth.AlarmShelve, alarmAction(s, "alarm.unshelve", func(id, who string, b actionBody) error {
			return s.alarms.Unshelve(id, who, b.Note)
		})),
		with("clear", auth.AlarmClear, alarmAction(s, "alarm.clear", func(id, who string, b actionBody) error { return s.alarms.Clear(id, who, b.Note) })),
	} {
		rs = append(rs,
			auth.Route{Method: http.MethodPost, Path: "/api/alarms/{id}/" + r.name, Perm: r.perm, Handler: r.h.one},
			auth.Route{Method: http.MethodPost, Path: "/api/alarm-actions/" + r.name, Perm: r.perm, Handler: r.h.bulk})
	}
	return rs
}

// visible reports whether p may see alarm a: by its district or site, or
// for an alarm that names neither (a power feed spanning districts) by
// its agent's.
func (s *Server) visible(p *auth.Principal, a *alarm.Alarm) bool {
	if p.Scope.All || p.Sees(a.District, a.Site) {
		return true
	}
	if a.District == "" && a.Site == "" && a.Agent != "" {
		if ag, ok := s.fleet.Agent(a.Agent); ok {
			return p.Sees(ag.District, ag.Site)
		}
	}
	return false
}

func (s *Server) listAlarms(w http.ResponseWriter, r *http.Request) {
	aq, err := parseAlarmQuery(r.URL.RawQuery)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	// The engine filters by state (none given: every alarm not closed);
	// the other filters accept alternatives, which its Filter does not.
	p := auth.From(r.Context())
	all := s.alarms.Alarms(alarm.Filter{States: aq.states})
	out := AlarmList{Alarms: []alarm.Alarm{}}
	match := all[:0]
	for _, a := range all {
		if aq.match(&a) && s.visible(p, &a) {
			match = append(match, a)
			out.Counts.add(a.Severity)
		}
	}
	lo, hi := aq.page(len(match))
	out.Alarms = append(out.Alarms, match[lo:hi]...)
	out.Total = len(match)
	s.reply(w, out)
}

func (s *Server) getAlarm(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	p := auth.From(r.Context())
	a, trail, ok := s.alarms.Alarm(id)
	if !ok || !s.visible(p, &a) {
		writeError(w, http.StatusNotFound, "no alarm "+strconv.Quote(clip(id)))
		return
	}
	d := AlarmDetail{Alarm: a, History: trail, Children: s.alarms.Children(id)}
	if a.Source == alarm.SourceAgentOffline && d.Children == nil {
		d.Children = s.behindAgent(a)
	}
	if dev, ok := s.fleet.Device(a.Device); ok && dev.Kind == wire.KindSensor {
		d.Cameras = coverage.Nearest(s.devices(p.Scope), dev.Location, relatedCameras)
	}
	s.reply(w, d)
}

// behindAgent lists the devices a lost agent's alarm explains: unreachable
// while the agent is away, so they raise no alarms of their own. They come
// from the registry's agent index: copying the whole city for one agent's
// devices cost tens of milliseconds at 100,000 devices.
func (s *Server) behindAgent(a alarm.Alarm) []alarm.Child {
	var out []alarm.Child
	for _, d := range s.fleet.QueryDevices(fleet.DeviceQuery{DeviceFilter: fleet.DeviceFilter{Agents: []string{a.Agent}}, NoTotal: true}).Devices {
		st := alarm.ChildRecovered
		if d.Status == wire.StatusUnreachable {
			st = alarm.ChildSuppressed
		}
		out = append(out, alarm.Child{Key: "device/" + d.ID, Source: alarm.SourceDeviceOffline, Device: d.ID, Agent: d.Agent,
			Severity: a.Severity, Status: st, Since: d.Since})
	}
	return out
}

// helloState fills a new websocket client's hello, as p may see it.
func (s *Server) helloState(p *auth.Principal, h *helloMessage) {
	h.Summary = s.summary(p.Scope)
	if s.alarms == nil || !p.Can(auth.AlarmRead) {
		return
	}
	// Shelved alarms are left out: the operator has muted them, and the
	// counts are what the console shows as needing attention.
	now := time.Now()
	h.Alarms = &AlarmCounts{}
	for _, a := range s.alarms.Alarms(alarm.Filter{States: []alarm.State{alarm.ActiveUnack, alarm.ActiveAck}}) {
		if !a.Shelved(now) && s.visible(p, &a) {
			h.Alarms.add(a.Severity)
		}
	}
}

// actionRequest is the body of an alarm action.
type actionRequest interface {
	check() error
	ids() []string
}

// actionBody is the body of ack, unshelve and clear, and the start of the
// others. Who acts is the authenticated caller, never a field of the body.
type actionBody struct {
	Note string `json:"note"`
	// IDs are the alarms of a bulk action (/api/alarm-actions/{action});
	// the action on one alarm names it in its path.
	IDs []string `json:"ids,omitempty"`
}

func (b actionBody) ids() []string { return b.IDs }

func (b actionBody) check() error {
	if !utf8.ValidString(b.Note) || utf8.RuneCountInString(b.Note) > maxNote {
		return badf("note must be valid UTF-8 of at most %d characters", maxNote)
	}
	return nil
}

type assignBody struct {
	actionBody
	To string `json:"to"` // empty: unassign
}

func (b assignBody) check() error {
	if len(b.To) > maxWho || !utf8.ValidString(b.To) || strings.ContainsFunc(b.To, unicode.IsControl) {
		return badf("to must be printable UTF-8 of at most %d bytes", maxWho)
	}
	return b.actionBody.check()
}

type shelveBody struct {
	actionBody
	For   string `json:"for"`   // a duration from now: "30m"
	Until string `json:"until"` // or an RFC 3339 time
}

func (b shelveBody) check() error {
	if (b.For == "") == (b.Until == "") {
		return badf("give exactly one of for (a duration, 30m) and until (an RFC 3339 time)")
	}
	return b.actionBody.check()
}

// until is when the shelving ends, at most longest from now: a shelved
// alarm is a muted one, and muting must end. A time not in the future is
// the engine's to refuse, with 409, like any other action the alarm's
// state forbids.
func (b shelveBody) until(now time.Time, longest time.Duration) (time.Time, error) {
	var t time.Time
	if b.Until != "" {
		var err error
		if t, err = time.Parse(time.RFC3339, b.Until); err != nil {
			return time.Time{}, badf("until %q is not an RFC 3339 time", clip(b.Until))
		}
	} else {
		d, err := time.ParseDuration(b.For)
		if err != nil || d <= 0 {
			return time.Time{}, badf("for %q is not a positive duration (30m, 8h)", clip(b.For))
		}
		t = now.Add(d)
	}
	if t.Sub(now) > longest {
		return time.Time{}, badf("an alarm may be shelved for at most %s", longest)
	}
	return t, nil
}

// alarmAction returns the handler of one action: decode and check the
// body, act as the authenticated caller, audit the outcome, answer with
// the alarm as it is afterwards. An alarm outside the caller's scope is
// not found.
// alarmAction returns the handlers of an action: on the alarm its path
// names, and in bulk on the alarms its body's ids name (one note for all,
// each alarm acted on, audited and answered for on its own).
func alarmAction[B actionRequest](s *Server, action string, do func(id, who string, b B) error) actionHandlers {
	read := func(w http.ResponseWriter, r *http.Request) (B, bool) {
		var b B
		err := decodeBody(w, r, &b)
		if err == nil {
			err = b.check()
		}
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return b, false
		}
		return b, true
	}
	one := func(w http.ResponseWriter, r *http.Request) {
		b, ok := read(w, r)
		if !ok {
			return
		}
		if len(b.ids()) > 0 {
			writeError(w, http.StatusBadRequest, "ids is for /api/alarm-actions/"+strings.TrimPrefix(action, "alarm.")+"; this path names its alarm")
			return
		}
		a, status, msg := applyAction(s, r, action, r.PathValue("id"), b, do)
		if status != http.StatusOK {
			writeError(w, status, msg)
			return
		}
		s.reply(w, AlarmReply{Alarm: a})
	}
	bulk := func(w http.ResponseWriter, r *http.Request) {
		b, ok := read(w, r)
		if !ok {
			return
		}
		ids := b.ids()
		if len(ids) == 0 || len(ids) > maxBulk {
			writeError(w, http.StatusBadRequest, "ids must name 1 to "+strconv.Itoa(maxBulk)+" alarms")
			return
		}
		out := BulkReply{Results: make([]BulkResult, 0, len(ids))}
		for _, id := range ids {
			a, status, msg := applyAction(s, r, action, id, b, do)
			res := BulkResult{ID: id, Status: status, Error: msg}
			if status == http.StatusOK {
				res.Alarm = &a
			}
			out.Results = append(out.Results, res)
		}
		s.reply(w, out)
	}
	return actionHandlers{one, bulk}
}

// actionHandlers serve an action on one alarm and in bulk.
type actionHandlers struct{ one, bulk http.HandlerFunc }

// maxBulk bounds the alarms of one bulk action.
const maxBulk = 500

// BulkReply answers a bulk action: one result per alarm, in the order
// given.
type BulkReply struct {
	Results []BulkResult `json:"results"`
}

// BulkResult is what became of one alarm of a bulk action: status 200
// and the alarm after it, or the status and error its own request would
// have had.
type BulkResult struct {
	ID     string       `json:"id"`
	Status int          `json:"status"`
	Alarm  *alarm.Alarm `json:"alarm,omitempty"`
	Error  string       `json:"error,omitempty"`
}

// applyAction acts on alarm id for the caller and audits it, and returns
// the alarm after it, or the status and message of the refusal.
func applyAction[B actionRequest](s *Server, r *http.Request, action, id string, b B, do func(id, who string, b B) error) (alarm.Alarm, int, string) {
	p := auth.From(r.Context())
	notFound := "no alarm " + strconv.Quote(clip(id))
	if a, _, ok := s.alarms.Alarm(id); !ok || !s.visible(p, &a) {
		return alarm.Alarm{}, http.StatusNotFound, notFound
	}
	err := do(id, p.Name, b)
	rec := audit.By(p, action, "alarm/"+id, audit.Success, noteOf(b))
	if err != nil {
		rec.Outcome, rec.Detail = audit.Failure, strings.TrimPrefix(rec.Detail+"; "+err.Error(), "; ")
	}
	if _, aerr := s.audit.Append(r.Context(), rec); aerr != nil {
		// The action stands; the audit log counts and reports its own
		// failures.
		s.log.Error("alarm action not audited", "alarm", id, "action", action, "who", p.Name, "err", aerr)
	}
	var bad badRequest
	switch {
	case errors.As(err, &bad):
		return alarm.Alarm{}, http.StatusBadRequest, err.Error()
	case errors.Is(err, alarm.ErrNotFound):
		return alarm.Alarm{}, http.StatusNotFound, notFound
	case errors.Is(err, alarm.ErrNoteRequired):
		return alarm.Alarm{}, http.StatusBadRequest, err.Error()
	case errors.Is(err, alarm.ErrInvalid):
		return alarm.Alarm{}, http.StatusConflict, err.Error()
	case errors.Is(err, alarm.ErrUnavailable):
		return alarm.Alarm{}, http.StatusServiceUnavailable, err.Error()
	case err != nil:
		s.log.Error("alarm action failed", "alarm", id, "err", err)
		return alarm.Alarm{}, http.StatusInternalServerError, "internal error"
	}
	// A closed alarm may already have been dropped from memory when many
	// were closed at once; it is gone either way.
	a, _, ok := s.alarms.Alarm(id)
	if !ok {
		return alarm.Alarm{}, http.StatusNotFound, notFound
	}
	return a, http.StatusOK, ""
}

// noteOf is what the audit record says of an action's body.
func noteOf(b actionRequest) string {
	switch b := b.(type) {
	case actionBody:
		return b.Note
	case assignBody:
		return strings.TrimPrefix("to "+cmp.Or(b.To, "nobody")+"; "+b.Note, "; ")
	case shelveBody:
		return strings.TrimSuffix("for "+b.For+b.Until+"; "+b.Note, "; ")
	}
	return ""
}

// decodeBody reads exactly one JSON object of known fields.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxActionBody))
	dec.DisallowUnknownFields() // a misspelt "note" must not vanish silently
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return badf("body larger than %d bytes", maxActionBody)
		}
		return badf("body is not the expected JSON object: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return badf("body has data after the JSON object")
	}
	return nil
}

// alarmQuery is a parsed filter for GET /api/alarms. As for devices,
// repeated values of one parameter are alternatives, different parameters
// must all match, and empty values are ignored.
type alarmQuery struct {
	states     []alarm.State // none: every alarm not closed
	severities []alarm.Severity
	sources    []alarm.Source
	devices    []string
	agents     []string
	list       listQuery // district, site, limit, offset
}

var alarmParams = []string{"agent", "device", "district", "limit", "offset", "severity", "since", "site", "source", "state"}

func parseAlarmQuery(raw string) (alarmQuery, error) {
	vals, err := url.ParseQuery(raw)
	if err != nil {
		return alarmQuery{}, badf("malformed query: %v", err)
	}
	var aq alarmQuery
	for _, name := range sortedKeys(vals) {
		if !slices.Contains(alarmParams, name) {
			return alarmQuery{}, badf("unknown parameter %q; allowed: %s", clip(name), strings.Join(alarmParams, ", "))
		}
		if len(vals[name]) > 1 && (name == "limit" || name == "offset" || name == "since") {
			return alarmQuery{}, badf("%s given more than once", name)
		}
		for _, v := range vals[name] {
			if v == "" {
				continue
			}
			if err := aq.set(name, v); err != nil {
				return alarmQuery{}, err
			}
		}
	}
	return aq, nil
}

func (aq *alarmQuery) set(name, v string) error {
	switch name {
	case "state":
		s := alarm.State(v)
		if !slices.Contains(alarm.States, s) {
			return badf("state %q is not one of %s", clip(v), join(alarm.States))
		}
		aq.states = append(aq.states, s)
	case "severity":
		s, err := alarm.ParseSeverity(v)
		if err != nil {
			return badf("severity: %v", err)
		}
		aq.severities = append(aq.severities, s)
	case "source":
		s := alarm.Source(v)
		if !slices.Contains(alarm.Sources, s) {
			return badf("source %q is not one of %s", clip(v), join(alarm.Sources))
		}
		aq.sources = append(aq.sources, s)
	case "device", "agent":
		if err := wire.ValidID(v); err != nil {
			return badf("%s: %v", name, err)
		}
		if name == "device" {
			aq.devices = append(aq.devices, v)
		} else {
			aq.agents = append(aq.agents, v)
		}
	default: // district, site, since, limit, offset: as for devices
		return aq.list.set(name, v, listParams{})
	}
	return nil
}

func (aq *alarmQuery) match(a *alarm.Alarm) bool {
	return anyOf(aq.severities, a.Severity) && anyOf(aq.sources, a.Source) &&
		anyOf(aq.devices, a.Device) && anyOf(aq.agents, a.Agent) &&
		anyOf(aq.list.districts, a.District) && anyOf(aq.list.sites, a.Site) && !a.LastAt.Before(aq.list.since)
}

func (aq *alarmQuery) page(n int) (lo, hi int) { return aq.list.page(n) }
