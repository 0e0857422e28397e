package metrics

import (
	"strings"
	"sync"
	"testing"
)

func TestWriteText(t *testing.T) {
	r := NewRegistry()
	rejects := r.CounterVec("citywatch_mqtt_rejects_total", "Messages rejected, by reason.", "reason")
	rejects.With("malformed").Add(3)
	rejects.With("too_large").Inc()
	r.Gauge("citywatch_ws_clients", "Connected websocket clients.").Set(7)
	r.GaugeFunc("citywatch_queue_depth", "Queued messages.", func() float64 { return 42 })
	r.CounterVec("citywatch_label_escape_total", "Escaping.", "v").With("a\"b\\c\nd").Inc()

	var b strings.Builder
	r.WriteText(&b)
	want := `# HELP citywatch_label_escape_total Escaping.
# TYPE citywatch_label_escape_total counter
citywatch_label_escape_total{v="a\"b\\c\nd"} 1
# HELP citywatch_mqtt_rejects_total Messages rejected, by reason.
# TYPE citywatch_mqtt_rejects_total counter
citywatch_mqtt_rejects_total{reason="malformed"} 3
citywatch_mqtt_rejects_total{reason="too_large"} 1
# HELP citywatch_queue_depth Queued messages.
# TYPE citywatch_queue_depth gauge
citywatch_queue_depth 42
# HELP citywatch_ws_clients Connected websocket clients.
# TYPE citywatch_ws_clients gauge
citywatch_ws_clients 7
`
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestConcurrentUpdates(t *testing.T) {
	r := NewRegistry()
	c := r.CounterVec("c_total", "c", "k")
	g := r.Gauge("g", "g")
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 1000; j++ {
				c.With("x").Inc()
				g.Add(1)
			}
		}()
	}
	wg.Wait()
	if got := c.With("x").Value(); got != 8000 {
		t.Errorf("counter = %d, want 8000", got)
	}
	if got := g.Value(); got != 8000 {
		t.Errorf("gauge = %v, want 8000", got)
	}
}

func TestDuplicateRegistrationPanics(t *testing.T) {
	r := NewRegistry()
	r.Counter("x_total", "x")
	defer func() {
		if recover() == nil {
			t.Error("second registration of x_total did not panic")
		}
	}()
	r.Counter("x_total", "x")
}
