package sim

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/citywatch/citywatch/agent/probe"
	"github.com/citywatch/citywatch/wire"
)

// virtualCamera is a camera of scale mode: a fault and nothing else.
type virtualCamera struct {
	fault atomic.Pointer[string]
}

// SetFault records the fault for the in-process prober; the fault table
// has validated it.
func (v *virtualCamera) SetFault(fault string) error {
	if fault == FaultRecover {
		fault = ""
	}
	v.fault.Store(&fault)
	return nil
}

// inProcessProber answers the agents' camera probes from the fault table
// without touching the network, with the reasons and details the real
// prober gives for the same faults. A hung camera answers at once (with
// reason timeout) rather than after the probe timeout: thousands of
// goroutines parked on timers would measure the simulator, not the hub.
type inProcessProber struct {
	cameras map[string]*virtualCamera // read-only after New
}

// Simulated measurements of a healthy camera.
const (
	simFPS         = 15
	simBitrateKbps = 2000
	simTCP         = 2 * time.Millisecond
	simRTSP        = 5 * time.Millisecond
)

// simStream is what DESCRIBE tells of a simulated camera's main stream:
// the 1080p H.264 most city cameras installed before H.265 send.
var simStream = wire.Stream{Codec: wire.CodecH264, Profile: "High", Width: 1920, Height: 1080}

// Probe implements the agent's CameraProber.
func (p *inProcessProber) Probe(ctx context.Context, t probe.Target) probe.Result {
	return p.answer(ctx, t, 0)
}

// Sample implements the agent's CameraProber.
func (p *inProcessProber) Sample(ctx context.Context, t probe.Target, d time.Duration) probe.Result {
	return p.answer(ctx, t, d)
}

func (p *inProcessProber) answer(ctx context.Context, t probe.Target, sample time.Duration) probe.Result {
	now := time.Now()
	res := probe.Result{At: now, TCP: simTCP}
	cam, ok := p.cameras[t.ID]
	if ctx.Err() != nil {
		return probe.Result{At: now, Reason: wire.ReasonProbeError, Detail: "cancelled"}
	}
	if !ok {
		return probe.Result{At: now, Reason: wire.ReasonProbeError, Detail: fmt.Sprintf("no simulated camera %q", t.ID)}
	}
	fault := ""
	if f := cam.fault.Load(); f != nil {
		fault = *f
	}
	switch fault {
	case FaultOffline:
		return probe.Result{At: now, Reason: wire.ReasonRefused, Detail: "TCP connection refused"}
	case FaultAuth:
		res.Reason, res.Detail = wire.ReasonAuthFailed, "RTSP 401 Unauthorized"
		return res
	case FaultNoStream:
		res.Reason, res.Detail = wire.ReasonNoStream, "RTSP 404 Not Found"
		return res
	case FaultHang:
		res.Reason, res.Detail = wire.ReasonTimeout, "connected, but RTSP did not answer in time"
		return res
	}
	res.RTSP, res.Stream = simRTSP, simStream
	if sample > 0 {
		res.Sampled = true
		res.Frames = int(sample.Seconds() * simFPS)
		res.FPS = simFPS
		res.BitrateKbps = simBitrateKbps
		res.LastFrame = now
	}
	return res
}
