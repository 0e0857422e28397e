package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/citywatch/citywatch/agent/sim"
	"github.com/citywatch/citywatch/hub/audit"
	"github.com/citywatch/citywatch/hub/auth"
	"github.com/citywatch/citywatch/hub/cluster"
	"github.com/citywatch/citywatch/hub/workorder"
	"github.com/citywatch/citywatch/internal/testenv"
)

// quickWorkYAML opens orders 2 s after a fault and closes them after 3 s
// of health.
const quickWorkYAML = "workorders: {grace: 2s, hold: 3s}\n"

// A city's work orders across two hubs: one hub keeps them, whichever
// hub's agent failed. A camera of the other hub's agents goes offline:
// both consoles list one order for it; a crew on the other hub starts it
// and adds a photo, which the keeper records and serves. The keeper is
// killed: the survivor takes the orders over from PostgreSQL, and when
// the camera recovers the same order closes itself there, its trail whole
// and in order, and no second order is opened. Both hubs write one audit
// trail, which an auditor reads and verifies on either.
func TestClusterWorkOrders(t *testing.T) {
	const partitions = 16
	srv := testenv.NATS(t)
	pg := testenv.Postgres(t)
	hubA := clusterHubRules(t, srv.URL(), srv.MQTTURL(), "hub-a", 1, pg, nil, quickRules, quickWorkYAML)
	hubB := clusterHubRules(t, srv.URL(), srv.MQTTURL(), "hub-b", 1, pg, hubA, quickRules, quickWorkYAML)
	hubs := map[string]*hubProcess{"hub-a": hubA, "hub-b": hubB}
	world, all, agentOf := runCity(t, srv.MQTTURL())

	var owned map[string]map[int]bool
	eventually(t, 60*time.Second, func() (err error) {
		if err := allOnline(all, hubA, hubB); err != nil {
			return err
		}
		owned, err = ownedOnce(hubs, partitions)
		return err
	})
	keeperName := "hub-a"
	if owned["hub-b"][cluster.Partition("workorders", partitions)] {
		keeperName = "hub-b"
	}
	keeper, other := hubA, hubB
	otherName := "hub-b"
	if keeperName == "hub-b" {
		keeper, other, otherName = hubB, hubA, "hub-a"
	}
	// A camera whose agent the other hub owns: its alarm is raised there.
	var cam string
	for id, agent := range agentOf {
		if owned[otherName][cluster.Partition(agent, partitions)] && (cam == "" || id < cam) {
			cam = id
		}
	}
	if cam == "" {
		t.Fatalf("%s owns no camera's agent: %v", otherName, owned)
	}
	t.Logf("%s keeps the work orders; camera %s of agent %s is %s's", keeperName, cam, agentOf[cam], otherName)

	if err := world.Fault(sim.Fault{Device: cam, Fault: sim.FaultOffline}); err != nil {
		t.Fatal(err)
	}
	var order workorder.Order
	eventually(t, 60*time.Second, func() error {
		for name, h := range hubs {
			o, err := onlyOrder(h, cam)
			if err != nil {
				return fmt.Errorf("%s: %v", name, err)
			}
			if order.ID != "" && o.ID != order.ID {
				return fmt.Errorf("the hubs list different orders: %s and %s", order.ID, o.ID)
			}
			order = o
		}
		return nil
	})

	// A crew on the other hub acts on it; the keeper makes the change.
	crew := hubA.token(t, "crew-wang", auth.Maintainer, auth.Everything).at(other.base)
	var started orderDetail
	crew.postJSON(t, "api/workorders/"+order.ID+"/start", `{}`, &started)
	if started.Order.State != workorder.InProgress || started.Order.Assignee != crew.name {
		t.Fatalf("start on %s: %+v", otherName, started.Order)
	}
	eventually(t, 10*time.Second, func() error {
		if o, err := onlyOrder(keeper, cam); err != nil || o.State != workorder.InProgress {
			return fmt.Errorf("%s shows the order %s (%v)", keeperName, o.State, err)
		}
		return nil
	})
	jpeg := append([]byte("\xFF\xD8\xFF\xE0\x00\x10JFIF\x00"), bytes.Repeat([]byte{0x5a}, 2000)...)
	code, answer, err := crew.send(http.MethodPost, "api/workorders/"+order.ID+"/photos?note="+url.QueryEscape("mount bent"), "image/jpeg", bytes.NewReader(jpeg))
	if err != nil || code != http.StatusCreated {
		t.Fatalf("photo on %s: %d %s %v", otherName, code, answer, err)
	}
	var photo workorder.Photo
	eventually(t, 10*time.Second, func() error {
		o, err := onlyOrder(keeper, cam)
		if err != nil || len(o.Photos) != 1 {
			return fmt.Errorf("%s shows photos %+v (%v)", keeperName, o.Photos, err)
		}
		photo = o.Photos[0]
		return nil
	})
	res, err := keeper.api.do(http.MethodGet, "api/workorders/"+order.ID+"/photos/"+photo.SHA256, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !bytes.Equal(got, jpeg) {
		t.Fatalf("the photo taken on %s, from %s: %d, %d bytes", otherName, keeperName, res.StatusCode, len(got))
	}

	// One audit trail: an auditor on the keeper reads what the crew did
	// on the other hub.
	auditor := hubA.token(t, "auditor-li", auth.Auditor, auth.Everything).at(keeper.base)
	var trail struct {
		Records []audit.Record `json:"records"`
	}
	auditor.getJSON(t, "api/audit?actor="+url.QueryEscape(crew.name), &trail)
	var did []string
	for _, r := range trail.Records {
		did = append(did, r.Action)
	}
	if !slices.Contains(did, "workorder.start") || !slices.Contains(did, "workorder.photo") {
		t.Errorf("the trail on %s of what %s did on %s: %v", keeperName, crew.name, otherName, did)
	}

	// The keeper dies; the camera comes back.
	if err := keeper.cmd.Process.Kill(); err != nil { // SIGKILL: no shutdown code runs
		t.Fatal(err)
	}
	keeper.cmd.Wait()
	eventually(t, 60*time.Second, func() error {
		ps, err := partitionsOf(other)
		if err != nil || len(ps) != partitions {
			return fmt.Errorf("%s owns %d partitions (%v)", otherName, len(ps), err)
		}
		return nil
	})
	if err := world.Fault(sim.Fault{Device: cam, Fault: sim.FaultRecover}); err != nil {
		t.Fatal(err)
	}
	var detail orderDetail
	eventually(t, 60*time.Second, func() error {
		if err := other.get("api/workorders/"+order.ID, &detail); err != nil {
			return err
		}
		if detail.Order.State != workorder.Closed {
			return fmt.Errorf("the order is %s on %s", detail.Order.State, otherName)
		}
		return nil
	})
	var actions []workorder.Action
	for _, tr := range detail.History {
		actions = append(actions, tr.Action)
	}
	want := []workorder.Action{workorder.ActOpen, workorder.ActStart, workorder.ActPhoto, workorder.ActHealthy, workorder.ActVerify}
	if detail.Order.Resolution != "recovered" || !slices.Equal(actions, want) {
		t.Errorf("the order closed with %q, trail %v; want recovered, %v", detail.Order.Resolution, actions, want)
	}
	var l orderList
	if err := other.get("api/workorders?state=all&device="+url.QueryEscape(cam), &l); err != nil || l.Total != 1 {
		t.Errorf("orders of %s on %s after the takeover: %d %v (%v)", cam, otherName, l.Total, l.Orders, err)
	}
	// Both hubs appended to the chain, which verifies whole.
	var rep audit.Report
	auditor.at(other.base).getJSON(t, "api/audit/verify", &rep)
	if !rep.OK || rep.Records < 4 {
		t.Errorf("the cluster's audit trail, verified on %s: %+v", otherName, rep)
	}
}

// onlyOrder is the one order not closed that lists device, on h.
func onlyOrder(h *hubProcess, device string) (workorder.Order, error) {
	var l orderList
	if err := h.get("api/workorders?device="+url.QueryEscape(device), &l); err != nil {
		return workorder.Order{}, err
	}
	if len(l.Orders) != 1 {
		return workorder.Order{}, fmt.Errorf("%d orders for %s: %+v", len(l.Orders), device, l.Orders)
	}
	return l.Orders[0], nil
}
