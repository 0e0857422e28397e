package ingest

import (
	"sync/atomic"
	"testing"

	"github.com/citywatch/citywatch/hub/metrics"
	"github.com/citywatch/citywatch/internal/testenv"
	"github.com/citywatch/citywatch/wire"
)

// TestRevokedAgentRefusedAndItsRetainedCleared refuses whatever a revoked
// agent still gets through, clears its retained birth and inventory from
// the broker (so a hub subscribing later hears nothing of it), and counts
// the empty messages that clearing produces instead of rejecting them.
func TestRevokedAgentRefusedAndItsRetainedCleared(t *testing.T) {
	b := testenv.Mosquitto(t)
	pub := newPublisher(t, b, "a1")
	pub.publish(wire.Topic("a1", wire.ChannelHealth), health(t, "a1", 1, nil), true)

	var revoked atomic.Bool
	rec := newRecorder()
	deps := rec.deps(metrics.NewRegistry())
	deps.Revoked = func(agent string) bool { return agent == "a1" && revoked.Load() }
	in, err := New(Config{BrokerURL: b.URL(), ClientID: "hub-revoke"}, deps)
	if err != nil {
		t.Fatal(err)
	}
	start(t, in)
	eventually(t, "the retained health", func() bool { return rec.count() == 1 })

	revoked.Store(true)
	pub.publish(wire.Topic("a1", wire.ChannelHealth), health(t, "a1", 2, nil), false)
	newPublisher(t, b, "a2").publish(wire.Topic("a2", wire.ChannelHealth), health(t, "a2", 1, nil), false)
	eventually(t, "a2's message", func() bool { return len(rec.seqs("a2")) == 1 })
	eventually(t, "a1's refusal counted", func() bool { return in.rejects[wire.RejectRevoked].Value() == 1 })
	if got := rec.seqs("a1"); len(got) != 1 {
		t.Fatalf("a revoked agent's message was applied: %v", got)
	}

	// Clear a1's retained messages: a retained state and inventory are
	// there to clear.
	pub.publish(wire.Topic("a1", wire.ChannelState), []byte(`{"retained":"birth"}`), true)
	pub.publish(wire.Topic("a1", wire.ChannelInventory), []byte(`{"retained":"inventory"}`), true)
	if err := in.ClearRetained("a1"); err != nil {
		t.Fatal(err)
	}
	if err := in.ClearRetained("not valid"); err == nil {
		t.Error("an invalid agent id was accepted")
	}
	revoked.Store(false) // so the clearing messages reach the empty-payload check
	eventually(t, "the clearings counted", func() bool { return in.cleared.Value() == 2 })
	rejected := in.rejects[wire.RejectMalformed].Value()

	// A second hub subscribing now gets the retained health but nothing of
	// a1's state or inventory.
	rec2 := newRecorder()
	in2, err := New(Config{BrokerURL: b.URL(), ClientID: "hub-later"}, rec2.deps(metrics.NewRegistry()))
	if err != nil {
		t.Fatal(err)
	}
	start(t, in2)
	eventually(t, "the retained health for the new hub", func() bool { return rec2.count() == 1 })
	if n := in2.received[string(wire.ChannelState)].Value() + in2.received[string(wire.ChannelInventory)].Value(); n != 0 {
		t.Errorf("a new subscriber got %d retained state/inventory messages after they were cleared", n)
	}
	if in.rejects[wire.RejectMalformed].Value() != rejected || in.rejects[wire.RejectMalformed].Value() != 0 {
		t.Error("clearing messages were rejected as malformed")
	}
}
