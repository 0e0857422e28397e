package workorder

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/citywatch/citywatch/wire"
)

// Prober asks an agent to probe devices now (hub/ingest's SendCommand).
type Prober interface {
	SendCommand(agent string, cmd wire.Command) error
}

// ErrNoProber is returned by Probe when the hub cannot reach agents.
var ErrNoProber = errors.New("workorder: probing is not available on this hub")

// probeWait bounds how long Probe waits for the agents' fresh results, and
// probePoll how often it looks.
const (
	probeWait = 20 * time.Second
	probePoll = 200 * time.Millisecond
)

// ProbeResult is one device's fresh probe, as its agent reported it.
type ProbeResult struct {
	Device string    `json:"device"`
	Status string    `json:"status"`
	Reason string    `json:"reason,omitempty"`
	Detail string    `json:"detail,omitempty"`
	Probed time.Time `json:"probed,omitzero"`
	Fresh  bool      `json:"fresh"` // probed after the request; false: the agent did not answer in time
}

// Probe asks the agents of order id's devices to probe them now and waits
// (at most probeWait, or until ctx ends) for every fresh result; the
// results go into the order's trail. A crew at the site sees at once
// whether what they did worked.
func (m *Manager) Probe(ctx context.Context, id, who string) ([]ProbeResult, error) {
	if m.deps.Prober == nil {
		return nil, ErrNoProber
	}
	o, _, ok := m.Order(id)
	if !ok {
		return nil, ErrNotFound
	}
	start := m.opts.Now()
	byAgent := map[string][]string{}
	for _, d := range o.Devices {
		if fd, ok := m.deps.Fleet.Device(d.ID); ok {
			byAgent[fd.Agent] = append(byAgent[fd.Agent], d.ID)
		}
	}
	var errs []error
	for agent, devs := range byAgent {
		if err := m.deps.Prober.SendCommand(agent, wire.Command{Type: wire.CommandProbe, Devices: devs}); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("workorder: probe %s: %w", id, err)
	}
	ctx, cancel := context.WithTimeout(ctx, probeWait)
	defer cancel()
	t := time.NewTicker(probePoll)
	defer t.Stop()
	for {
		out, done := m.results(o, start), true
		for _, r := range out {
			done = done && r.Fresh
		}
		if done {
			return m.noteProbe(id, who, out)
		}
		select {
		case <-ctx.Done():
			return m.noteProbe(id, who, out)
		case <-t.C:
		}
	}
}

func (m *Manager) results(o Order, since time.Time) []ProbeResult {
	out := make([]ProbeResult, 0, len(o.Devices))
	for _, d := range o.Devices {
		r := ProbeResult{Device: d.ID, Status: "unknown"}
		if fd, ok := m.deps.Fleet.Device(d.ID); ok {
			r.Status, r.Reason, r.Detail, r.Probed = string(fd.Status), string(fd.Reason), fd.Detail, fd.Probed
			r.Fresh = !fd.Probed.Before(since)
		}
		out = append(out, r)
	}
	return out
}

// noteProbe records the results in the order's trail.
func (m *Manager) noteProbe(id, who string, rs []ProbeResult) ([]ProbeResult, error) {
	var parts []string
	for _, r := range rs {
		s := r.Device + " " + r.Status
		if r.Reason != "" {
			s += " (" + r.Reason + ")"
		}
		if !r.Fresh {
			s += " [no fresh answer]"
		}
		parts = append(parts, s)
	}
	if _, err := m.do(Command{Op: OpProbe, ID: id, Who: who, Note: "re-probe: " + strings.Join(parts, "; ")}); err != nil {
		return nil, err
	}
	return rs, nil
}

// note records c's note (probe results) in its order's trail; called with
// the lock held, on the hub that keeps the orders.
func (m *Manager) note(c Command) (*entry, error) {
	e, ok := m.orders[c.ID]
	if !ok {
		return nil, ErrNotFound
	}
	o := &e.order
	m.record(e, Transition{At: m.opts.Now(), Who: c.Who, Action: ActProbe, From: o.State, To: o.State, Note: c.Note}, EventUpdate)
	return e, nil
}
