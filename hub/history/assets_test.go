package history

import (
	"context"
	"testing"

	"github.com/citywatch/citywatch/hub/fleet"
)

// A unit replaced is in the device's history for good: written when the
// inventory says so, read back after a restart.
func TestAssetChangesKept(t *testing.T) {
	path := tempDB(t)
	c := &clock{now: at(10)}
	h := open(t, path, c, Options{})
	h.Observe(fleet.Change{Kind: fleet.ChangeInventory, At: at(9), Assets: []fleet.AssetChange{
		{Device: "cam-1", Field: "serial", From: "SN-1", To: "SN-2", At: at(9)},
		{Device: "cam-2", Field: "firmware", From: "V1", To: "V2", At: at(9)},
	}})
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	h = open(t, path, c, Options{})
	got, err := h.Assets(context.Background(), "cam-1")
	if err != nil || len(got) != 1 || got[0].Field != "serial" || got[0].From != "SN-1" || got[0].To != "SN-2" || !got[0].At.Equal(at(9)) {
		t.Fatalf("cam-1: %+v %v", got, err)
	}
	if got, _ := h.Assets(context.Background(), "cam-3"); len(got) != 0 {
		t.Errorf("cam-3: %+v", got)
	}
}
