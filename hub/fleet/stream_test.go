package fleet_test

import (
	"slices"
	"testing"
	"time"

	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/wire"
)

func TestStreamFault(t *testing.T) {
	h := newHarness(t)
	h.setup("a1", "Riverside", "cam-1", "cam-2")

	// A failed stream makes an online camera degraded, as one Change.
	at := h.clk.Add(time.Second)
	h.r.SetStreamFault("cam-1", wire.ReasonAuthFailed, "RTSP 401")
	ch := h.take()
	if len(ch) != 1 || ch[0].Kind != fleet.ChangeDevice || ch[0].From != wire.StatusOnline || ch[0].To != wire.StatusDegraded ||
		ch[0].Reason != "auth_failed" || ch[0].Detail != "RTSP 401" || ch[0].Device.ID != "cam-1" {
		t.Fatalf("fault changes = %+v", ch)
	}
	d := h.device("cam-1")
	if d.Status != wire.StatusDegraded || d.Reason != wire.ReasonAuthFailed || d.Reported != wire.StatusOnline || !d.Since.Equal(at) {
		t.Fatalf("cam-1 = %+v", d)
	}
	if s := h.r.Summary(); s.ByStatus[wire.StatusDegraded] != 1 || s.IntactRate != 0.5 {
		t.Fatalf("summary = %+v", s)
	}
	checkInvariants(t, h.r)

	// The agent's online reports do not hide the fault…
	h.must(h.health("a1", line("cam-1", wire.StatusOnline, "")))
	if ch := h.take(); len(ch) != 0 || h.device("cam-1").Reason != wire.ReasonAuthFailed {
		t.Fatalf("online report over a fault: %+v, %+v", ch, h.device("cam-1"))
	}
	// …but what the agent says of a failing camera comes first.
	h.must(h.health("a1", line("cam-1", wire.StatusOffline, wire.ReasonRefused)))
	if d := h.device("cam-1"); d.Status != wire.StatusOffline || d.Reason != wire.ReasonRefused {
		t.Fatalf("offline report over a fault: %+v", d)
	}
	h.must(h.health("a1", line("cam-1", wire.StatusOnline, "")))
	if d := h.device("cam-1"); d.Status != wire.StatusDegraded {
		t.Fatalf("fault forgotten after the camera recovered: %+v", d)
	}
	// And an unreachable agent explains everything.
	h.must(h.will("a1", 1))
	if d := h.device("cam-1"); d.Status != wire.StatusUnreachable {
		t.Fatalf("behind an offline agent: %+v", d)
	}
	h.must(h.birth("a1", 2))
	h.take()

	// A later stream that works clears it.
	h.r.ClearStreamFault("cam-1")
	ch = h.take()
	if len(ch) != 1 || ch[0].From != wire.StatusDegraded || ch[0].To != wire.StatusOnline || ch[0].Reason != "" {
		t.Fatalf("clear changes = %+v", ch)
	}
	h.r.ClearStreamFault("cam-1") // nothing to clear
	h.r.SetStreamFault("cam-404", wire.ReasonNoStream, "")
	if ch := h.take(); len(ch) != 0 {
		t.Fatalf("no-op calls changed %+v", ch)
	}
	if got := statuses(h.r.Devices()); !slices.Equal(got, []string{"cam-1=online", "cam-2=online"}) {
		t.Fatalf("devices = %v", got)
	}
	checkInvariants(t, h.r)
}
