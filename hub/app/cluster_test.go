package app

import (
	"strings"
	"testing"

	"github.com/citywatch/citywatch/hub/alarmview"
	"github.com/citywatch/citywatch/hub/cluster"
	"github.com/citywatch/citywatch/hub/console"
	"github.com/citywatch/citywatch/hub/workview"
)

// The cluster's part of /healthz: failing until NATS and the stream are
// there, then what the hub holds and did, degraded while messages outside
// the contract have been dropped.
func TestClusterHealth(t *testing.T) {
	if h := clusterHealth(cluster.Status{Hub: "hub-a"}, alarmview.Stats{}, workview.Stats{}); h.Status != console.HealthFailing {
		t.Errorf("not ready: %+v", h)
	}
	st := cluster.Status{Hub: "hub-a", Ready: true, Owned: []int{0, 3}, Consumers: cluster.ConsumerStats{Applied: 7, Followed: 5},
		View: cluster.PublishStats{Records: 11, Inventories: 2}}
	av := alarmview.Stats{Remote: 4, Applied: 9, Announced: 3}
	wv := workview.Stats{Keeper: "hub-b", Applied: 6, Asked: 2, Refused: 5}
	if h := clusterHealth(st, av, wv); h.Status != console.HealthOK || !strings.Contains(h.Reason, "consumes 2 partitions [0 3]") ||
		!strings.Contains(h.Reason, "applied 7, followed 5, dropped outside the contract 0") ||
		!strings.Contains(h.Reason, "records of its agents sent to the others 11 (inventories 2)") ||
		!strings.Contains(h.Reason, "alarms of other hubs in view 4, their changes applied 9") ||
		!strings.Contains(h.Reason, "work orders kept by hub-b, changes applied here 6 (missed and read again 0), asked of the keeper 2") ||
		!strings.Contains(h.Reason, "refused after its lease ran out 5") {
		t.Errorf("ready: %+v", h)
	}
	st.Consumers.BadSubject = 2
	if h := clusterHealth(st, av, wv); h.Status != console.HealthDegraded || !strings.Contains(h.Reason, "dropped outside the contract 2") {
		t.Errorf("after drops: %+v", h)
	}
	st.Consumers.BadSubject, av.Dropped = 0, 1
	if h := clusterHealth(st, av, wv); h.Status != console.HealthDegraded || !strings.Contains(h.Reason, "not announced 1") {
		t.Errorf("after an announcement was lost: %+v", h)
	}
	av.Dropped, wv.Dropped = 0, 4
	if h := clusterHealth(st, av, wv); h.Status != console.HealthDegraded || !strings.Contains(h.Reason, "this hub's announced 0, not announced 4") {
		t.Errorf("after a work-order announcement was lost: %+v", h)
	}
	wv.Dropped, st.Consumers.Failing = 0, 3
	if h := clusterHealth(st, av, wv); h.Status != console.HealthDegraded || !strings.Contains(h.Reason, "failing now 3") {
		t.Errorf("while consumers fail: %+v", h)
	}
}
