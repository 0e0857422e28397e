package workorder

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/citywatch/citywatch/wire"
)

// snapshotWait bounds how long a snapshot request waits for the agents.
const snapshotWait = 20 * time.Second

// maxSnapshotCams bounds the cameras one request asks for.
const maxSnapshotCams = 8

// snapshots are the pictures requested and not yet answered, by the
// command's id.
type snapshots struct {
	mu      sync.Mutex
	waiting map[string]chan wire.Snapshot
}

// HandleSnapshot takes a camera's picture an agent sent (hub/ingest calls
// it). One nobody asked for, or asked for by another agent, is dropped.
func (m *Manager) HandleSnapshot(agent string, s wire.Snapshot) {
	m.snaps.mu.Lock()
	ch, ok := m.snaps.waiting[s.Request]
	m.snaps.mu.Unlock()
	if fd, known := m.deps.Fleet.Device(s.Device); !ok || !known || fd.Agent != agent {
		// In a cluster every hub hears every snapshot, and only the one
		// that asked takes it.
		level := slog.LevelWarn
		if m.deps.Leader != nil && !ok {
			level = slog.LevelDebug
		}
		m.log.Log(context.Background(), level, "snapshot nobody here asked for dropped", "agent", agent, "device", s.Device, "request", s.Request)
		return
	}
	select {
	case ch <- s:
	default:
	}
}

// SnapshotResult is one camera's answer to a snapshot request.
type SnapshotResult struct {
	Device string `json:"device"`
	Photo  *Photo `json:"photo,omitempty"` // kept with the order
	Error  string `json:"error,omitempty"`
}

// Snapshot asks the agents for a picture of every camera of order id that
// has a snapshot URL (at most maxSnapshotCams), waits for them and keeps
// them with the order as photos, so a crew sees the camera points where it
// should. who is who asked (System on verification).
func (m *Manager) Snapshot(ctx context.Context, id, who string) ([]SnapshotResult, error) {
	if m.deps.Prober == nil {
		return nil, ErrNoProber
	}
	o, _, ok := m.Order(id)
	if !ok {
		return nil, ErrNotFound
	}
	type ask struct {
		device, agent, request string
		ch                     chan wire.Snapshot
	}
	var asks []ask
	for _, d := range o.Devices {
		fd, ok := m.deps.Fleet.Device(d.ID)
		if !ok || fd.Camera == nil || !fd.Camera.Snapshot || len(asks) == maxSnapshotCams {
			continue
		}
		asks = append(asks, ask{device: d.ID, agent: fd.Agent, request: "snap-" + rand.Text()[:16], ch: make(chan wire.Snapshot, 1)})
	}
	if len(asks) == 0 {
		return nil, fmt.Errorf("%w: no camera of %s has a snapshot URL", ErrBadRequest, id)
	}
	m.snaps.mu.Lock()
	for _, a := range asks {
		m.snaps.waiting[a.request] = a.ch
	}
	m.snaps.mu.Unlock()
	defer func() {
		m.snaps.mu.Lock()
		for _, a := range asks {
			delete(m.snaps.waiting, a.request)
		}
		m.snaps.mu.Unlock()
	}()
	out := make([]SnapshotResult, len(asks))
	for i, a := range asks {
		out[i].Device = a.device
		if err := m.deps.Prober.SendCommand(a.agent, wire.Command{ID: a.request, Type: wire.CommandSnapshot, Devices: []string{a.device}}); err != nil {
			out[i].Error = err.Error()
			asks[i].ch = nil // nothing will come
		}
	}
	ctx, cancel := context.WithTimeout(ctx, snapshotWait)
	defer cancel()
	for i, a := range asks {
		if a.ch == nil {
			continue
		}
		select {
		case s := <-a.ch:
			if s.Error != "" {
				out[i].Error = s.Error
				continue
			}
			p, err := m.AddPhoto(id, who, "snapshot of "+a.device, s.JPEG)
			if err != nil {
				out[i].Error = err.Error()
				continue
			}
			out[i].Photo = &p
		case <-ctx.Done():
			out[i].Error = "the agent did not answer in time"
		}
	}
	return out, nil
}

// verifyShots takes, after a verified close, a picture of the order's
// cameras for the record; Run does it so the close never waits on agents.
func (m *Manager) verifyShots(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case id := <-m.closedShots:
			if _, err := m.Snapshot(ctx, id, System); err != nil && !errors.Is(err, ErrBadRequest) {
				m.log.Warn("snapshot on verification failed", "order", id, "err", err)
			}
		}
	}
}
