package fleet

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/citywatch/citywatch/wire"
)

// Record is an agent as the hub that owns it in a cluster holds it: what
// the other hubs' read views take (ApplyRecord) in place of the agent's
// every message. The owner makes one when the agent or one of its devices
// changes, and now and then to carry what is last seen and measured.
// Between hubs it travels as JSON (Encode, DecodeRecord).
type Record struct {
	Agent     string       `json:"agent"`
	Status    wire.Status  `json:"status"` // online, offline or unknown
	Reason    string       `json:"reason,omitempty"`
	Since     time.Time    `json:"since"`
	LastSeen  time.Time    `json:"last_seen,omitzero"`
	Version   string       `json:"version,omitempty"`
	Dropped   wire.Dropped `json:"dropped,omitzero"`
	DroppedAt time.Time    `json:"dropped_at,omitzero"`
	// Report is each device's last report (status, reason, detail, since),
	// its metrics, probe and contact, in the shape of the agent's own
	// health report, so that the agents' decoder checks it; its TS is when
	// the record was made. Health is it decoded.
	Report json.RawMessage `json:"report"`
	Health wire.Health     `json:"-"`
	// Seen is when each of Report's devices was last mentioned by the
	// agent, and Shown since when the owner has shown its status, in Unix
	// milliseconds, in Report's order (0: never).
	Seen  []int64 `json:"seen"`
	Shown []int64 `json:"shown"`
	// Faults are the devices whose live stream failed (SetStreamFault).
	Faults []Fault `json:"faults,omitempty"`
}

// Fault is a device's failed live stream.
type Fault struct {
	Device string      `json:"device"`
	Reason wire.Reason `json:"reason"`
	Detail string      `json:"detail,omitempty"`
}

// Record returns the agent as this registry holds it, made at now; false
// when it has no inventory yet (a record's devices would be refused).
func (r *Registry) Record(id string) (Record, bool) {
	now := r.opts.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	a := r.agents[id]
	if a == nil || !a.inventory {
		return Record{}, false
	}
	v := &a.view
	rec := Record{Agent: v.ID, Status: v.Status, Reason: v.Reason, Since: v.Since, LastSeen: v.LastSeen,
		Version: v.Version, Dropped: v.Dropped, DroppedAt: v.DroppedAt}
	boot := v.Boot
	if boot <= 0 {
		boot = now.UnixMilli()
	}
	rec.Health = wire.Health{Header: wire.Header{V: wire.Version, Agent: v.ID, Boot: boot, Seq: v.Seq, TS: now},
		Interval: r.interval(a).Seconds(), Devices: make([]wire.DeviceHealth, 0, len(a.devices))}
	for _, d := range a.devices {
		if d.reported == 0 && !d.is(triggered) {
			continue // the agent has said nothing of it
		}
		l := wire.DeviceHealth{ID: d.id(), Status: cmp.Or(d.reportedStatus(), wire.StatusUnknown),
			Since: r.timeOf(d.repSince), Probed: r.timeOf(d.probed), Metrics: d.metrics(), Triggered: d.is(triggered)}
		if l.Since.IsZero() {
			l.Since = v.Since
		}
		if d.rep != nil {
			l.Reason, l.Detail = d.rep.reason, d.rep.detail
		}
		rec.Health.Devices = append(rec.Health.Devices, l)
		rec.Seen = append(rec.Seen, d.lastSeen/int64(time.Millisecond))
		rec.Shown = append(rec.Shown, d.since/int64(time.Millisecond))
		if f := d.fault(); f != nil {
			rec.Faults = append(rec.Faults, Fault{Device: d.id(), Reason: f.reason, Detail: f.detail})
		}
	}
	return rec, true
}

// Encode is the record as JSON, its Health as Report.
func (rec *Record) Encode() ([]byte, error) {
	report, err := json.Marshal(&rec.Health)
	if err != nil {
		return nil, fmt.Errorf("fleet: record of %s: %w", rec.Agent, err)
	}
	out := *rec
	out.Report = report
	return json.Marshal(&out)
}

// ErrBadRecord is wrapped by DecodeRecord's errors.
var ErrBadRecord = errors.New("fleet: bad record")

// DecodeRecord parses and checks a record another hub sent, as the hub's
// clock reads now: its Report as an agent's health report, the rest as
// the registry would hold it.
func DecodeRecord(payload []byte, now time.Time) (*Record, error) {
	var rec Record
	if err := json.Unmarshal(payload, &rec); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRecord, err)
	}
	if err := wire.ValidID(rec.Agent); err != nil {
		return nil, fmt.Errorf("%w: agent: %v", ErrBadRecord, err)
	}
	m, err := wire.Decode(wire.Topic(rec.Agent, wire.ChannelHealth), rec.Report, now)
	if err != nil {
		return nil, fmt.Errorf("%w: agent %s: report: %v", ErrBadRecord, rec.Agent, err)
	}
	if m.Health == nil {
		return nil, fmt.Errorf("%w: agent %s: report is not a health report", ErrBadRecord, rec.Agent)
	}
	rec.Health, rec.Report = *m.Health, nil
	if err := rec.check(now); err != nil {
		return nil, fmt.Errorf("%w: agent %s: %v", ErrBadRecord, rec.Agent, err)
	}
	return &rec, nil
}

// check judges what wire.Decode did not.
func (rec *Record) check(now time.Time) error {
	var errs []error
	switch rec.Status {
	case wire.StatusOnline, wire.StatusOffline, wire.StatusUnknown:
	default:
		errs = append(errs, fmt.Errorf("status %q is not an agent's", clip(string(rec.Status))))
	}
	if rec.Reason != "" && !slices.Contains(AgentReasons, rec.Reason) {
		errs = append(errs, fmt.Errorf("reason %q is not an agent's", clip(rec.Reason)))
	}
	if len(rec.Version) > wire.MaxNameLen {
		errs = append(errs, fmt.Errorf("version longer than %d", wire.MaxNameLen))
	}
	for _, t := range []time.Time{rec.Since, rec.LastSeen, rec.DroppedAt} {
		if !t.IsZero() && (t.Year() < 2000 || t.Sub(now) > wire.MaxClockSkew) {
			errs = append(errs, fmt.Errorf("time %s is before 2000 or ahead of the hub clock", t.Format(time.RFC3339)))
		}
	}
	if n := len(rec.Health.Devices); len(rec.Seen) != n || len(rec.Shown) != n {
		errs = append(errs, fmt.Errorf("%d seen and %d shown times for %d devices", len(rec.Seen), len(rec.Shown), n))
	}
	limit := now.Add(wire.MaxClockSkew).UnixMilli()
	for i := range min(len(rec.Seen), len(rec.Shown)) {
		if rec.Seen[i] < 0 || rec.Seen[i] > limit || rec.Shown[i] < 0 || rec.Shown[i] > limit {
			errs = append(errs, fmt.Errorf("device %d: a time is before 1970 or ahead of the hub clock", i))
			break
		}
	}
	if len(rec.Faults) > len(rec.Health.Devices) {
		errs = append(errs, fmt.Errorf("%d faults for %d devices", len(rec.Faults), len(rec.Health.Devices)))
	}
	for _, f := range rec.Faults {
		if err := wire.ValidID(f.Device); err != nil || len(f.Reason) > wire.MaxNameLen || len(f.Detail) > wire.MaxDetailLen {
			errs = append(errs, fmt.Errorf("fault of device %q is malformed", clip(f.Device)))
			break
		}
	}
	return errors.Join(errs...)
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// ApplyRecord takes an agent as the hub that owns it holds it, for the
// read view: its status, when it was last heard and each device's last
// report, metrics, probe, contact and failed stream, with a Change for
// what that changes, as the owner emitted them. Devices the agent's
// inventory here does not list are passed over (the inventory comes
// apart; a later record has them). An agent with no inventory here is
// refused (wire.RejectUnknownDevice).
func (r *Registry) ApplyRecord(rec *Record) error {
	now := r.opts.Now()
	r.mu.Lock()
	defer r.unlock()
	a := r.agents[rec.Agent]
	if a == nil || !a.inventory {
		return reject(wire.RejectUnknownDevice, "no inventory of agent %q here yet", rec.Agent)
	}
	lines := make([]wire.DeviceHealth, 0, len(rec.Health.Devices))
	r.lines = r.lines[:0]
	var seen, shown []int64
	for i, l := range rec.Health.Devices {
		if d := r.devices.get(l.ID); d != nil && d.agent() == a {
			lines, seen, shown = append(lines, l), append(seen, rec.Seen[i]), append(shown, rec.Shown[i])
			r.lines = append(r.lines, d)
		}
	}
	v := &a.view
	v.LastSeen, v.Version, v.Dropped, v.DroppedAt = rec.LastSeen, rec.Version, rec.Dropped, rec.DroppedAt
	v.Interval = rec.Health.Interval
	r.touched, r.trig = r.touched[:0], r.trig[:0]
	a.takeMetrics(lines, r.lines)
	for i := range lines {
		l, d := &lines[i], r.lines[i]
		r.touch(d)
		d.report(l.Status, l.Reason, l.Detail, l.Since)
		d.lastSeen, d.probed = seen[i]*int64(time.Millisecond), unixNano(l.Probed)
		if d.is(triggered) != l.Triggered {
			d.set(triggered, l.Triggered)
			r.trig = append(r.trig, d)
		}
	}
	r.takeFaults(a, rec.Faults)
	moved := rec.Status != v.Status
	if moved {
		r.setAgent(a, rec.Status, rec.Reason, cmp.Or(rec.Since, now))
	}
	v.Reason = rec.Reason
	r.emitTouched(moved, "", now)
	// The owner's times replace those the changes took from this hub's
	// clock (they differ by the record's way here).
	for i, d := range r.lines {
		if shown[i] > 0 {
			d.since = shown[i] * int64(time.Millisecond)
		}
	}
	return nil
}

// takeFaults makes a's failed streams those of faults, touching the
// devices whose fault changes.
func (r *Registry) takeFaults(a *agent, faults []Fault) {
	if len(faults) == 0 && len(a.faults) == 0 {
		return
	}
	want := make(map[*device]*reported, len(faults))
	for _, f := range faults {
		if d := r.devices.get(f.Device); d != nil && d.agent() == a {
			want[d] = &reported{reason: f.Reason, detail: f.Detail}
		}
	}
	for d, f := range a.faults {
		if w, ok := want[d]; !ok || *w != *f {
			r.touch(d)
		}
	}
	for d := range want {
		if _, ok := a.faults[d]; !ok {
			r.touch(d)
		}
		d.set(faulted, true)
	}
	for d := range a.faults {
		if _, ok := want[d]; !ok {
			d.set(faulted, false)
		}
	}
	a.faults = want
}
