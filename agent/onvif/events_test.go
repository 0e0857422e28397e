package onvif_test

import (
	"context"
	"testing"
	"time"

	"github.com/citywatch/citywatch/agent/onvif"
	"github.com/citywatch/citywatch/agent/sim"
)

// TestEvents: a pull-point subscription gets the camera's events with
// their state and time; tamper and scene change are tamper, motion is
// motion, blur, dark and bright are theirs, other topics nothing the
// agent uses.
func TestEvents(t *testing.T) {
	o := &sim.ONVIF{Username: "admin", Password: "s3cret&<ok>"}
	sub, err := camera(t, o).Subscribe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	o.Emit("tns1:RuleEngine/TamperDetector/Tamper", "IsTamper", true)
	o.Emit("tns1:VideoSource/GlobalSceneChange/ImagingService", "State", false)
	o.Emit("tns1:RuleEngine/CellMotionDetector/Motion", "IsMotion", true)
	o.Emit("tns1:VideoSource/ImageTooBlurry/ImagingService", "State", true)
	o.Emit("tns1:VideoSource/ImageTooDark/AnalyticsService", "State", true)
	o.Emit("tns1:VideoSource/ImageTooBright/ImagingService", "State", false)
	o.Emit("tns1:Device/Trigger/DigitalInput", "LogicalState", true)
	got, err := sub.Pull(context.Background(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		kind   string
		active bool
	}{{onvif.KindTamper, true}, {onvif.KindTamper, false}, {onvif.KindMotion, true},
		{onvif.KindBlurry, true}, {onvif.KindDark, true}, {onvif.KindBright, false}, {"", true}}
	if len(got) != len(want) {
		t.Fatalf("pulled %+v, want %d events", got, len(want))
	}
	for i, w := range want {
		if got[i].Kind() != w.kind || got[i].Active != w.active || !got[i].Known || time.Since(got[i].At).Abs() > time.Minute {
			t.Errorf("event %d: %+v (kind %q), want %q active %v", i, got[i], got[i].Kind(), w.kind, w.active)
		}
	}
	// Nothing new: the pull waits, then answers empty.
	if got, err := sub.Pull(context.Background(), time.Second); err != nil || len(got) != 0 {
		t.Errorf("second pull %+v, %v; want nothing", got, err)
	}
}
