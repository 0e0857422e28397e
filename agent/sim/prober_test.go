package sim

import (
	"context"
	"testing"
	"time"

	"github.com/citywatch/citywatch/agent/probe"
	"github.com/citywatch/citywatch/wire"
)

func TestInProcessProber(t *testing.T) {
	cam := &virtualCamera{}
	p := &inProcessProber{cameras: map[string]*virtualCamera{"cam-1": cam}}
	target := probe.Target{ID: "cam-1", URL: "rtsp://127.0.0.1:554/cam-1"}

	tests := []struct {
		fault string
		want  wire.Reason
	}{
		{FaultRecover, wire.ReasonNone},
		{FaultOffline, wire.ReasonRefused},
		{FaultAuth, wire.ReasonAuthFailed},
		{FaultNoStream, wire.ReasonNoStream},
		{FaultHang, wire.ReasonTimeout},
	}
	for _, tt := range tests {
		if err := cam.SetFault(tt.fault); err != nil {
			t.Fatal(err)
		}
		if got := p.Probe(t.Context(), target); got.Reason != tt.want {
			t.Errorf("%s: probe reason %q, want %q", tt.fault, got.Reason, tt.want)
		}
	}

	if err := cam.SetFault(FaultRecover); err != nil {
		t.Fatal(err)
	}
	res := p.Sample(t.Context(), target, 2*time.Second)
	if !res.OK() || !res.Sampled || res.Frames != 2*simFPS || res.FPS != simFPS || res.BitrateKbps <= 0 {
		t.Errorf("healthy sample: %+v", res)
	}
	if res := p.Probe(t.Context(), probe.Target{ID: "cam-9"}); res.Reason != wire.ReasonProbeError {
		t.Errorf("unknown camera: %+v", res)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if res := p.Probe(ctx, target); res.Reason != wire.ReasonProbeError {
		t.Errorf("cancelled probe: %+v", res)
	}
}
