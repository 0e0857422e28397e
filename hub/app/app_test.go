package app

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/citywatch/citywatch/hub/config"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestNewRefusesInvalidConfig(t *testing.T) {
	cfg := config.Default()
	cfg.Listen = "nowhere"
	cfg.MQTT.Queue = 0
	_, err := New(cfg, quiet())
	if err == nil || !strings.Contains(err.Error(), "listen") || !strings.Contains(err.Error(), "mqtt.queue") {
		t.Fatalf("New = %v, want both problems", err)
	}
}

// With the embedded broker the hub is self-contained: it listens, connects
// its ingest to its own broker, reports healthy, and stops cleanly.
func TestEmbeddedBrokerHub(t *testing.T) {
	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.Broker = config.Broker{Enabled: true, Addr: "127.0.0.1:0"}
	hub, err := New(cfg, quiet())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- hub.Run(ctx) }()
	select {
	case <-hub.Ready():
	case err := <-done:
		t.Fatalf("Run returned before ready: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("not ready after 30s")
	}
	if hub.BrokerURL() == cfg.MQTT.URL || !strings.HasPrefix(hub.BrokerURL(), "tcp://127.0.0.1:") {
		t.Errorf("BrokerURL %q is not the embedded broker's", hub.BrokerURL())
	}
	var health struct {
		Components map[string]struct{ Status string } `json:"components"`
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err := http.Get(hub.ConsoleURL() + "healthz")
		if err != nil {
			t.Fatal(err)
		}
		err = json.NewDecoder(res.Body).Decode(&health)
		res.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if health.Components["mqtt"].Status == "ok" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("mqtt never healthy: %+v", health)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := health.Components["history"].Status; got != "degraded" {
		t.Errorf("history without InfluxDB is %q, want degraded", got)
	}
	// Live video is wired in: its API answers, and an unknown camera is
	// refused before anything is sent to an agent.
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{http.MethodGet, "api/live/streams", http.StatusOK},
		{http.MethodPost, "api/cameras/cam-none/whep", http.StatusNotFound},
	} {
		req, _ := http.NewRequest(tc.method, hub.ConsoleURL()+tc.path, strings.NewReader("v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 102\r\na=rtpmap:102 H264/90000\r\n"))
		req.Header.Set("Content-Type", "application/sdp")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != tc.want {
			t.Errorf("%s /%s = %d, want %d", tc.method, tc.path, res.StatusCode, tc.want)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return 30s after cancel")
	}
}

func TestMaintenanceConfigProblemsListed(t *testing.T) {
	cfg := config.Default()
	cfg.Alarms.Maintenance = []config.Maintenance{
		{Name: "night", Sites: []string{"s1"}, Daily: "22:00-06:00", Timezone: "Asia/Shanghai"},
		{Name: "", Daily: "25:00-06:00", Timezone: "Mars/Olympus"},
	}
	_, err := New(cfg, quiet())
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{"maintenance[1].timezone", "name is missing", "covers nothing", "HH:MM"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "maintenance[0]") {
		t.Errorf("the valid window was refused:\n%v", err)
	}
}
