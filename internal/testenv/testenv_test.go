package testenv_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v4"
	"github.com/bluenviron/gortsplib/v4/pkg/base"
	"github.com/bluenviron/gortsplib/v4/pkg/format"
	mch264 "github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/chromedp/chromedp"
	mqtt "github.com/eclipse/paho.mqtt.golang"
	influxdb2 "github.com/influxdata/influxdb-client-go/v2"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/pion/rtp"

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

// The camera serves H.264 whose keyframes carry SPS and PPS in band, to a
// reader that joins the running stream.
func TestFFmpegCamera(t *testing.T) {
	cam := testenv.FFmpegCamera(t, testenv.CameraOptions{Width: 320, Height: 240, Bitrate: 300_000})
	u, err := base.ParseURL(cam.URL())
	if err != nil {
		t.Fatal(err)
	}
	tcp := gortsplib.TransportTCP
	c := gortsplib.Client{Scheme: u.Scheme, Host: u.Host, Transport: &tcp}
	if err := c.Start2(); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	desc, _, err := c.Describe(u)
	if err != nil {
		t.Fatal(err)
	}
	var h264 *format.H264
	media := desc.FindFormat(&h264)
	if media == nil {
		t.Fatalf("no H.264 in %+v", desc)
	}
	dec, err := h264.CreateDecoder()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SetupAll(desc.BaseURL, desc.Medias); err != nil {
		t.Fatal(err)
	}
	keyframe := make(chan [][]byte, 1)
	c.OnPacketRTP(media, h264, func(p *rtp.Packet) {
		au, err := dec.Decode(p)
		if err == nil && mch264.IsRandomAccess(au) {
			select {
			case keyframe <- au:
			default:
			}
		}
	})
	if _, err := c.Play(nil); err != nil {
		t.Fatal(err)
	}
	select {
	case au := <-keyframe:
		var types []mch264.NALUType
		for _, nalu := range au {
			types = append(types, mch264.NALUType(nalu[0]&0x1f))
		}
		if !slices.Contains(types, mch264.NALUTypeSPS) || !slices.Contains(types, mch264.NALUTypePPS) {
			t.Fatalf("keyframe's NAL units %v: want SPS and PPS in band", types)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no keyframe within 10s")
	}
}

// A three-node NATS cluster keeps a replicated stream when a node dies.
func TestNATSCluster(t *testing.T) {
	c := testenv.StartNATSCluster(t, 3)
	js := testenv.JetStream(t, c.URLs())
	ctx := t.Context()
	// A replicated stream needs the peers' answers: right after the
	// cluster formed the request may time out, as the hubs' does (they
	// try again too).
	deadline := time.Now().Add(20 * time.Second)
	var s jetstream.Stream
	for {
		var err error
		s, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}, Replicas: 3})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no replicated stream made in 20 s: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The stream's replicas may still be electing a leader when it is
	// made: until then a publish gets no response from the stream.
	publish(t, js, "t.1", "before")
	c.Nodes[0].Stop()
	publish(t, js, "t.2", "after")
	deadline = time.Now().Add(20 * time.Second)
	// The stream's info comes from its leader, which a new election may
	// not have yet (the request times out meanwhile).
	for {
		info, err := s.Info(ctx)
		if err == nil && info.State.Msgs == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream after a node died: %+v, %v", info, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// publish stores data under subject, trying for 20 s while the stream has
// no leader to answer; the message ID keeps a publish that timed out but
// landed from landing twice.
func publish(t *testing.T, js jetstream.JetStream, subject, data string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := js.Publish(t.Context(), subject, []byte(data), jetstream.WithMsgID(subject))
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("publish %s: no stream answered in 20 s: %v", subject, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// A NATS server in its own process takes JetStream streams and MQTT
// clients, and its messages reach NATS subscribers.
func TestNATSProcess(t *testing.T) {
	srv := testenv.NATSProcess(t)
	js := testenv.JetStream(t, srv.URL())
	s, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "T", Subjects: []string{"a.>"}})
	if err != nil {
		t.Fatal(err)
	}
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(srv.MQTTURL()).SetClientID("t"))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("MQTT: %v", tok.Error())
	}
	defer c.Disconnect(100)
	if tok := c.Publish("a/b", 1, false, "hello"); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("MQTT publish: %v", tok.Error())
	}
	m, err := s.GetLastMsgForSubject(t.Context(), "a.b")
	if err != nil || string(m.Data) != "hello" {
		t.Fatalf("the stream holds %v (%v), want the MQTT message", m, err)
	}
}
