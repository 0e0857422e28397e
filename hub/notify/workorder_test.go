package notify

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/citywatch/citywatch/hub/alarm"
	"github.com/citywatch/citywatch/hub/workorder"
)

// A ticketing system that asked for work orders gets their opening and
// closing, with the order and an idempotency key, and nothing else; a
// hook with the default kinds gets no work-order events at all.
func TestWorkOrderEvents(t *testing.T) {
	tickets := newReceiver(t, nil)
	sms := newReceiver(t, nil)
	tk := fastHook("tickets", tickets.srv.URL)
	tk.Kinds = []alarm.EventKind{KindWorkOrderOpen, KindWorkOrderClose}
	h := newHarness(t, []Webhook{tk, fastHook("sms", sms.srv.URL)}, Deps{Now: func() time.Time { return t0 }})
	h.start(t)
	o := workorder.Order{ID: "WO-7", Site: "S1", State: workorder.Open, Priority: workorder.P2}
	for _, ev := range []workorder.Event{
		{Kind: workorder.EventOpen, Order: o, Transition: workorder.Transition{At: t0, Who: "system", Action: workorder.ActOpen, To: workorder.Open}},
		{Kind: workorder.EventUpdate, Order: o, Transition: workorder.Transition{At: t0.Add(time.Minute), Who: "wang", Action: workorder.ActStart}},
		{Kind: workorder.EventClose, Order: o, Transition: workorder.Transition{At: t0.Add(time.Hour), Who: "system", Action: workorder.ActVerify, To: workorder.Closed}},
	} {
		h.n.NotifyWorkOrder(ev)
	}
	eventually(t, "delivery", func() bool { return h.metric(`citywatch_notify_sent_total{hook="tickets"}`) == "2" })
	got := tickets.requests()
	var first struct {
		Event     string          `json:"event"`
		WorkOrder workorder.Order `json:"work_order"`
	}
	if err := json.Unmarshal([]byte(got[0].raw), &first); err != nil || first.Event != "workorder.open" || first.WorkOrder.ID != "WO-7" {
		t.Errorf("first request %s (%v)", got[0].raw, err)
	}
	if k := got[1].header.Get("Idempotency-Key"); k != "WO-7/verify/"+t0.Add(time.Hour).Format(time.RFC3339Nano) {
		t.Errorf("Idempotency-Key %q", k)
	}
	if n := len(sms.requests()); n != 0 {
		t.Errorf("the alarm hook got %d work-order requests", n)
	}
}
