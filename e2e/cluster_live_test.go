package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/citywatch/citywatch/hub/cluster"
	"github.com/citywatch/citywatch/internal/testenv"
)

// Any hub of a cluster plays any camera: a viewer on hub-a watches a
// camera whose agent hub-b owns. hub-a asks the agent through NATS's MQTT
// listener and takes the agent's answer from it (every hub hears the
// agents' live signalling; the relay keeps what is for its own sessions),
// and relays real RTSP video over WebRTC on loopback.
func TestClusterLiveOnAnyHub(t *testing.T) {
	srv := testenv.NATS(t)
	hub := func(id string) *hubProcess {
		return startHubProcess(t, hubProcessOptions{brokerURL: srv.MQTTURL(),
			yaml: fmt.Sprintf("cluster: {nats_url: %q, hub_id: %q, partitions: 16}\nlive: {loopback_only: true, linger: 300ms}\n", srv.URL(), id),
			env:  []string{"CITYWATCH_MQTT_CLIENT_ID=" + id}})
	}
	hubA, hubB := hub("hub-a"), hub("hub-b")
	_, all, agentOf := runCity(t, srv.MQTTURL())
	var camera string
	eventually(t, 60*time.Second, func() error {
		for _, h := range []*hubProcess{hubA, hubB} {
			if n, err := onlineOn(h); err != nil || n != len(all) {
				return fmt.Errorf("a hub shows %d of %d devices online (%v)", n, len(all), err)
			}
		}
		ofB, err := partitionsOf(hubB)
		if err != nil {
			return err
		}
		ofA, err := partitionsOf(hubA)
		if err != nil {
			return err
		}
		for _, id := range all {
			p := cluster.Partition(agentOf[id], 16)
			if agent, ok := agentOf[id]; ok && agent != "" && ofB[p] && !ofA[p] {
				camera = id
				return nil
			}
		}
		return fmt.Errorf("hub-b owns no camera's agent yet (%v)", ofB)
	})
	p := playWHEP(t, hubA.api, camera)
	p.awaitFrames(t, 30, 30*time.Second)
	p.stop(t)
}
