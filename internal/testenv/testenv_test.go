package testenv_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	mqtt "github.com/eclipse/paho.mqtt.golang"
	influxdb2 "github.com/influxdata/influxdb-client-go/v2"

	"github.com/citywatch/citywatch/internal/testenv"
)

// waitToken waits for a paho token without sleeping past completion.
func waitToken(t *testing.T, what string, tok mqtt.Token) {
	t.Helper()
	if !tok.WaitTimeout(10 * time.Second) {
		t.Fatalf("%s: timed out", what)
	}
	if err := tok.Error(); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func connect(t *testing.T, b *testenv.Broker, id string) mqtt.Client {
	t.Helper()
	opts := mqtt.NewClientOptions().AddBroker(b.URL()).SetClientID(id).
		SetAutoReconnect(false).SetConnectTimeout(5 * time.Second)
	c := mqtt.NewClient(opts)
	waitToken(t, "connect "+id, c.Connect())
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

// subscribe returns a channel receiving the payloads on topic.
func subscribe(t *testing.T, c mqtt.Client, topic string) <-chan string {
	t.Helper()
	got := make(chan string, 10)
	waitToken(t, "subscribe "+topic, c.Subscribe(topic, 1, func(_ mqtt.Client, m mqtt.Message) {
		got <- string(m.Payload())
	}))
	return got
}

func receive(t *testing.T, got <-chan string, want string) {
	t.Helper()
	select {
	case p := <-got:
		if p != want {
			t.Fatalf("payload = %q, want %q", p, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no message %q within 10s", want)
	}
}

func TestMosquitto(t *testing.T) {
	b := testenv.Mosquitto(t)
	if want := "tcp://" + b.Addr(); b.URL() != want {
		t.Fatalf("URL() = %q, want %q", b.URL(), want)
	}

	sub := connect(t, b, "testenv-sub")
	got := subscribe(t, sub, "testenv/ping")
	pub := connect(t, b, "testenv-pub")
	waitToken(t, "publish", pub.Publish("testenv/ping", 1, false, "hello"))
	receive(t, got, "hello")

	// A retained message survives a restart through the persistence file.
	waitToken(t, "publish retained", pub.Publish("testenv/birth", 1, true, "online"))
	b.Restart()
	after := connect(t, b, "testenv-after-restart")
	receive(t, subscribe(t, after, "testenv/birth"), "online")
}

func TestInfluxDB(t *testing.T) {
	in := testenv.InfluxDB(t)
	if in.Bucket() != "citywatch/autogen" {
		t.Fatalf("Bucket() = %q", in.Bucket())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	c := in.Client(t)
	ts := time.Now().Truncate(time.Millisecond)
	p := influxdb2.NewPoint("probe",
		map[string]string{"device": "cam-1"},
		map[string]any{"rtt_ms": 42.5},
		ts)
	if err := c.WriteAPIBlocking(in.Org(), in.Bucket()).WritePoint(ctx, p); err != nil {
		t.Fatalf("write: %v", err)
	}

	rows := in.Query(t, fmt.Sprintf(`from(bucket: %q)
  |> range(start: -1h)
  |> filter(fn: (r) => r._measurement == "probe" and r._field == "rtt_ms")`, in.Bucket()))
	if len(rows) != 1 {
		t.Fatalf("got %d rows, want 1: %v", len(rows), rows)
	}
	r := rows[0]
	if r["_value"] != 42.5 || r["device"] != "cam-1" {
		t.Fatalf("row = %v, want _value 42.5 and device cam-1", r)
	}
	if tm, ok := r["_time"].(time.Time); !ok || !tm.Equal(ts) {
		t.Fatalf("_time = %v, want %v", r["_time"], ts)
	}
}

func TestChromium(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, `<!doctype html><html><head><title>citywatch testenv</title></head><body>ok</body></html>`)
	}))
	defer srv.Close()

	ctx := testenv.Chromium(t)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL)); err != nil {
		t.Fatalf("navigate: %v", err)
	}
	title, err := chromedp.Run(ctx, chromedp.Title())
	if err != nil {
		t.Fatalf("title: %v", err)
	}
	if title != "citywatch testenv" {
		t.Fatalf("title = %q, want %q", title, "citywatch testenv")
	}
}

func TestFreePort(t *testing.T) {
	if p := testenv.FreePort(t); p <= 0 || p > 65535 {
		t.Fatalf("FreePort() = %d", p)
	}
}
