package secret

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestURLString(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"rtsp://admin:pw@10.0.0.2:554/ch1", "rtsp://admin:***@10.0.0.2:554/ch1"},
		{"rtsp://admin@10.0.0.2/ch1", "rtsp://admin@10.0.0.2/ch1"},
		{"rtsp://10.0.0.2/ch1", "rtsp://10.0.0.2/ch1"},
		{"rtsp://a%40b:p%3Aw@cam/x", "rtsp://a%40b:***@cam/x"},
		{"rtsp://cam/live?channel=1&password=pw&user=admin", "rtsp://cam/live?channel=1&password=***&user=admin"},
		{"http://u:pw@cam/snap.jpg?token=abc", "http://u:***@cam/snap.jpg?token=***"},
		{"rtsp://u:pw@[::1", "***"}, // does not parse: mask it all
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := URL(tt.in).String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestNoLeak prints values holding secrets in every way the code base
// prints things and checks the secret never shows.
func TestNoLeak(t *testing.T) {
	type conf struct {
		Password String
		Camera   URL
	}
	c := conf{Password: "hunter2", Camera: "rtsp://admin:hunter2@cam/x?pwd=hunter2"}

	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("x", "conf", c, "pw", c.Password, "url", c.Camera)
	slog.New(slog.NewTextHandler(&logs, nil)).Info("x", "conf", c, "pw", c.Password, "url", c.Camera)
	js, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	outputs := map[string]string{
		"%v":  fmt.Sprintf("%v", c),
		"%+v": fmt.Sprintf("%+v", c),
		"%#v": fmt.Sprintf("%#v", c),
		//lint:ignore S1025 the %s verb is what is tested
		"%s":   fmt.Sprintf("%s", c.Password),
		"json": string(js),
		"slog": logs.String(),
	}
	for name, out := range outputs {
		if strings.Contains(out, "hunter2") {
			t.Errorf("%s leaks the secret: %s", name, out)
		}
	}
	if c.Password.Reveal() != "hunter2" || !strings.Contains(c.Camera.Reveal(), "hunter2") {
		t.Error("Reveal must return the secret")
	}
}

func TestEmptyStringStaysVisible(t *testing.T) {
	if got := String("").String(); got != "" {
		t.Errorf("empty secret prints as %q, want empty", got)
	}
}
