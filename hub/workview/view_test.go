package workview

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/hub/workorder"
	"github.com/citywatch/citywatch/internal/testenv"
	"github.com/citywatch/citywatch/wire"
)

// city is the read view every hub has of the devices.
type city map[string]fleet.Device

func (c city) Device(id string) (fleet.Device, bool) { d, ok := c[id]; return d, ok }

func (c city) DevicesWhere(keep func(district, site string) bool) []fleet.Device {
	var out []fleet.Device
	for _, d := range c {
		if keep(d.District, d.Site) {
			out = append(out, d)
		}
	}
	return out
}

// hub is one hub's work orders and view, on a real NATS server and the
// store the hubs share.
type hub struct {
	m     *workorder.Manager
	view  *View
	lease atomic.Bool
	heard atomic.Int64 // events this hub's consoles got
}

func startHub(t *testing.T, url, id, dsn string, devices city) *hub {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	h := &hub{}
	var err error
	h.view, err = New(Config{NATSURL: url, Hub: id}, Deps{Leads: h.lease.Load, Log: log,
		OnEvent: func(workorder.Event) { h.heard.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	st, err := workorder.OpenStore(dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	h.m, err = workorder.New(workorder.Options{}, workorder.Deps{Log: log, Fleet: devices, Store: st, Leader: h.view,
		OnEvent: func(ev workorder.Event) {
			h.heard.Add(1)
			h.view.Announce(ev)
		}})
	if err != nil {
		t.Fatal(err)
	}
	h.view.Serve(h.m)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.view.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	testenv.Eventually(t, 10*time.Second, func() error {
		h.view.mu.Lock()
		defer h.view.mu.Unlock()
		if h.view.nc == nil {
			return errors.New("not connected")
		}
		return nil
	})
	return h
}

// lead gives h the lease and the orders.
func (h *hub) lead(t *testing.T) {
	t.Helper()
	h.lease.Store(true)
	if err := h.m.TakeLead(nil); err != nil {
		t.Fatal(err)
	}
}

// standDown takes h's lease and orders away.
func (h *hub) standDown(t *testing.T) {
	t.Helper()
	h.lease.Store(false)
	if err := h.m.StandDown(); err != nil {
		t.Fatal(err)
	}
}

// trail waits until h's view of order id has n transitions, the last
// being action; then it checks it stays at n.
func trail(t *testing.T, h *hub, id string, n int, action workorder.Action) workorder.Order {
	t.Helper()
	var o workorder.Order
	testenv.Eventually(t, 10*time.Second, func() error {
		var tr []workorder.Transition
		var ok bool
		o, tr, ok = h.m.Order(id)
		if !ok || len(tr) != n || tr[n-1].Action != action {
			return fmt.Errorf("order %s: found %v, trail %+v; want %d transitions ending in %s", id, ok, tr, n, action)
		}
		return nil
	})
	return o
}

// Two hubs share one city's work orders over NATS: the keeper's orders
// show on the other; a crew's action on the other is made by the keeper,
// recorded once, and answered with why when refused; when the orders
// change hands the old keeper asks the new one, and reads the store again
// on hearing it.
func TestOneCityOfWorkOrders(t *testing.T) {
	url := testenv.NATS(t).URL()
	dsn := filepath.Join(t.TempDir(), "workorders.db")
	devices := city{"cam-1": {ID: "cam-1", Kind: wire.KindCamera, Site: "S1", District: "North", Agent: "ag1", Status: wire.StatusOnline}}
	a := startHub(t, url, "hub-a", dsn, devices)
	b := startHub(t, url, "hub-b", dsn, devices)
	a.lead(t)

	o, err := a.m.OpenByHand("chen", []string{"cam-1"}, "lens dirty", workorder.P3)
	if err != nil {
		t.Fatal(err)
	}
	trail(t, b, o.ID, 1, workorder.ActOpen)
	if _, err := b.m.Act(o.ID, workorder.ActStart, workorder.Request{Who: "wang"}); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := b.m.Order(o.ID); got.State != workorder.InProgress {
		t.Errorf("on the hub that asked, at once: %s", got.State)
	}
	trail(t, a, o.ID, 2, workorder.ActStart)
	trail(t, b, o.ID, 2, workorder.ActStart)
	if _, err := b.m.Act(o.ID, workorder.ActHold, workorder.Request{Who: "wang"}); !errors.Is(err, workorder.ErrReasonMissing) {
		t.Errorf("a hold without a reason, through the keeper: %v", err)
	}
	if _, err := b.m.Act("WO-404", workorder.ActStart, workorder.Request{Who: "wang"}); !errors.Is(err, workorder.ErrNotFound) {
		t.Errorf("no such order, through the keeper: %v", err)
	}

	// The orders change hands: b keeps them now.
	a.standDown(t)
	b.lead(t)
	if _, err := a.m.Act(o.ID, workorder.ActNote, workorder.Request{Who: "li", Note: "parts ordered"}); err != nil {
		t.Fatal(err)
	}
	trail(t, b, o.ID, 3, workorder.ActNote)
	trail(t, a, o.ID, 3, workorder.ActNote)
	// b's announcement of the note reaches a after b's answer did.
	testenv.Eventually(t, 10*time.Second, func() error {
		if st := a.view.Stats(); st.Keeper != "hub-b" || st.Reloads != 1 || st.Asked != 1 {
			return fmt.Errorf("hub a's view after the hand-over: %+v", st)
		}
		if st := b.view.Stats(); st.Keeper != "hub-b" || st.Asked != 3 || st.Announced != 1 {
			return fmt.Errorf("hub b's view: %+v", st)
		}
		return nil
	})
	if a.heard.Load() < 3 || b.heard.Load() < 3 {
		t.Errorf("consoles heard %d and %d changes", a.heard.Load(), b.heard.Load())
	}

	// Nobody keeps them: a change cannot be made, and says so.
	b.standDown(t)
	if _, err := a.m.Act(o.ID, workorder.ActNote, workorder.Request{Who: "li", Note: "still waiting"}); !errors.Is(err, workorder.ErrUnavailable) {
		t.Errorf("with no keeper: %v", err)
	}
}
