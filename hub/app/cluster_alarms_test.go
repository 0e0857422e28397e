package app

import (
	"testing"

	"github.com/citywatch/citywatch/hub/alarm"
	"github.com/citywatch/citywatch/hub/config"
	"github.com/citywatch/citywatch/internal/testenv"
)

// A clustered hub with the shared store keeps its own notices (alarms of
// no agent, which no other hub takes over) across a restart, and numbers
// its next alarm after them.
func TestClusterHubKeepsItsNotices(t *testing.T) {
	nats := testenv.NATS(t)
	cfg := testConfig(t)
	cfg.Broker.Enabled = false
	cfg.MQTT.URL = nats.MQTTURL()
	cfg.Cluster.NATSURL, cfg.Cluster.HubID, cfg.Cluster.Partitions = nats.URL(), "hub-a", 4
	cfg.Cluster.PostgresURL = config.Secret(testenv.Postgres(t))

	notice := alarm.Alarm{Key: string(alarm.SourceSecurity) + ":hub/test", Source: alarm.SourceSecurity, Type: "test", Detail: "a test notice"}

	first, stop := start(t, cfg)
	first.alarms.Notice(notice)
	open := first.alarms.Alarms(alarm.Filter{})
	if len(open) != 1 || open[0].ID != "Ahub-a-1" {
		stop()
		t.Fatalf("the notice is %+v, want one alarm of hub-a's prefix", open)
	}
	id := open[0].ID
	stop() // writes what is queued before it returns

	second, stop := start(t, cfg)
	defer stop()
	got, trail, ok := second.alarms.Alarm(id)
	if !ok || got.State != alarm.ClearedUnack || len(trail) == 0 {
		t.Fatalf("after a restart hub-a holds %+v (%v), want its notice %s waiting for an operator", got, ok, id)
	}
	second.alarms.Notice(alarm.Alarm{Key: string(alarm.SourceSecurity) + ":hub/other", Source: alarm.SourceSecurity, Type: "test"})
	if _, _, ok := second.alarms.Alarm("Ahub-a-2"); !ok {
		t.Errorf("the next notice is not Ahub-a-2: %+v", second.alarms.Alarms(alarm.Filter{}))
	}
}
