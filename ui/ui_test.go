package ui

import (
	"encoding/json"
	"io/fs"
	"os"
	"path"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/citywatch/citywatch/wire"
)

// TestEveryFileEmbedded checks that each file of the console in this
// directory is in FS, so a new kind of file cannot be left out silently.
func TestEveryFileEmbedded(t *testing.T) {
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || strings.HasSuffix(name, ".go") || strings.HasPrefix(name, ".") {
			continue
		}
		if _, err := fs.Stat(FS(), name); err != nil {
			t.Errorf("%s is in ui/ but not embedded: %v", name, err)
		}
	}
	for _, name := range []string{"index.html", "app.js", "style.css", "i18n.json"} {
		if _, err := fs.Stat(FS(), name); err != nil {
			t.Errorf("FS lacks %s: %v", name, err)
		}
	}
}

func read(t *testing.T, name string) string {
	t.Helper()
	b, err := fs.ReadFile(FS(), name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestReferencesResolve checks that index.html and every module refer only
// to files that exist in FS: a typo would otherwise surface as a blank page.
func TestReferencesResolve(t *testing.T) {
	local := func(ref string) bool {
		return ref != "" && !strings.Contains(ref, ":") && !strings.HasPrefix(ref, "#") && !strings.HasPrefix(ref, "/api/")
	}
	htmlRef := regexp.MustCompile(`(?:src|href)="([^"]*)"`)
	jsRef := regexp.MustCompile(`(?:\bfrom\s+|\bimport\s*\(?\s*|\bfetch\(\s*|url = )'(\./[^']+|[\w.-]+\.json)'`)

	tests := []struct {
		file string
		re   *regexp.Regexp
	}{{"index.html", htmlRef}}
	jsFiles, err := fs.Glob(FS(), "*.js")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range jsFiles {
		tests = append(tests, struct {
			file string
			re   *regexp.Regexp
		}{f, jsRef})
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			for _, m := range tt.re.FindAllStringSubmatch(read(t, tt.file), -1) {
				ref := m[1]
				if !local(ref) {
					continue
				}
				name := path.Clean(strings.TrimPrefix(ref, "./"))
				if _, err := fs.Stat(FS(), name); err != nil {
					t.Errorf("%s refers to %q, which is not in FS", tt.file, ref)
				}
			}
		})
	}
	// The entry point must be loaded as a module.
	if !strings.Contains(read(t, "index.html"), `<script type="module" src="app.js">`) {
		t.Error("index.html does not load app.js as a module")
	}
}

func dictionaries(t *testing.T) map[string]map[string]string {
	t.Helper()
	var d map[string]map[string]string
	if err := json.Unmarshal([]byte(read(t, "i18n.json")), &d); err != nil {
		t.Fatalf("i18n.json: %v", err)
	}
	return d
}

var placeholder = regexp.MustCompile(`\{\w+\}`)

// TestTranslationsComplete checks that en and zh-CN have the same keys, no
// empty strings, and the same placeholders.
func TestTranslationsComplete(t *testing.T) {
	d := dictionaries(t)
	en, zh := d["en"], d["zh-CN"]
	if len(en) == 0 || len(zh) == 0 {
		t.Fatalf("i18n.json needs en and zh-CN, has %d and %d keys", len(en), len(zh))
	}
	for k, v := range en {
		z, ok := zh[k]
		switch {
		case !ok:
			t.Errorf("zh-CN lacks %q", k)
		case strings.TrimSpace(v) == "" || strings.TrimSpace(z) == "":
			t.Errorf("%q is empty in en or zh-CN", k)
		default:
			pe, pz := placeholder.FindAllString(v, -1), placeholder.FindAllString(z, -1)
			slices.Sort(pe)
			slices.Sort(pz)
			if !slices.Equal(pe, pz) {
				t.Errorf("%q: placeholders differ: en %v, zh-CN %v", k, pe, pz)
			}
		}
	}
	for k := range zh {
		if _, ok := en[k]; !ok {
			t.Errorf("zh-CN has %q, which en lacks", k)
		}
	}
}

// TestKeysUsedExist checks that every key the page and modules name
// literally, and every status, reason and sensor kind of the wire contract,
// has an English string.
func TestKeysUsedExist(t *testing.T) {
	en := dictionaries(t)["en"]
	var used []string
	attr := regexp.MustCompile(`data-i18n(?:-title|-placeholder|-label)?="([^"]+)"`)
	for _, m := range attr.FindAllStringSubmatch(read(t, "index.html"), -1) {
		used = append(used, m[1])
	}
	call := regexp.MustCompile(`\bt\(\s*'([\w.-]+)'`)
	jsFiles, _ := fs.Glob(FS(), "*.js")
	for _, f := range jsFiles {
		src := read(t, f)
		for _, m := range call.FindAllStringSubmatch(src, -1) {
			used = append(used, m[1])
		}
		for _, m := range attr.FindAllStringSubmatch(src, -1) {
			used = append(used, m[1])
		}
	}
	statuses := []wire.Status{wire.StatusOnline, wire.StatusDegraded, wire.StatusOffline, wire.StatusUnknown, wire.StatusUnreachable}
	for _, s := range statuses {
		used = append(used, "status."+string(s))
	}
	reasons := []wire.Reason{
		wire.ReasonUnreachable, wire.ReasonRefused, wire.ReasonAuthFailed, wire.ReasonNoStream, wire.ReasonTimeout,
		wire.ReasonLowFrameRate, wire.ReasonSupervisionLost, wire.ReasonTamper, wire.ReasonAgentOffline, wire.ReasonProbeError,
	}
	for _, r := range reasons {
		used = append(used, "reason."+string(r))
	}
	for _, k := range wire.SensorKinds {
		used = append(used, "sensor."+string(k))
	}
	for _, k := range []wire.DeviceKind{wire.KindCamera, wire.KindSensor} {
		used = append(used, "kind."+string(k))
	}
	metrics := []string{
		wire.MetricTCPMillis, wire.MetricRTSPMillis, wire.MetricFPS, wire.MetricBitrateKbps, wire.MetricFrameAge,
		wire.MetricCheckinAge, wire.MetricBatteryPct, wire.MetricSignalDBm, wire.MetricProbeFailures,
	}
	for _, m := range metrics {
		used = append(used, "metric."+m)
	}
	if len(used) < 50 {
		t.Fatalf("found only %d keys in use; has the t('…') call form changed?", len(used))
	}
	for _, k := range used {
		if _, ok := en[k]; !ok {
			t.Errorf("key %q is used but not in i18n.json", k)
		}
	}
}

// TestLiveVideoHooks checks that the DOM ids and window.citywatch functions
// that browser tests of live video rely on are still there, so renaming one
// fails here, next to the change, rather than in a slow end-to-end test.
func TestLiveVideoHooks(t *testing.T) {
	tests := []struct {
		file string
		want []string
	}{
		{"index.html", []string{`id="wall-btn"`, `id="wall"`, `<dialog id="player"`}},
		{"video.js", []string{`id="player-video"`, "dataset.state", "dataset.camera"}},
		{"wall.js", []string{"setLayout(n)", "assign(i, cameraId)", "dataset.layout", "dataset.tile", "el.dataset.camera"}},
		{"app.js", []string{"openLive(id)", "closeLive()", "videoStats()", "this.wall = new Wall(", "window.citywatch = app"}},
		{"whep.js", []string{"/api/cameras/", "/whep", "'application/sdp'", "method: 'DELETE'", "keepalive: true", "recvonly"}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			src := read(t, tt.file)
			for _, w := range tt.want {
				if !strings.Contains(src, w) {
					t.Errorf("%s lacks %q", tt.file, w)
				}
			}
		})
	}
}

// TestAlarmHooks checks the DOM ids, attributes and window.citywatch.alarms
// functions that browser tests of the alarm desk rely on, and that every
// severity, state, source and transition action of the hub's alarm JSON has
// words (the console builds those keys at run time).
func TestAlarmHooks(t *testing.T) {
	tests := []struct {
		file string
		want []string
	}{
		{"index.html", []string{`id="alarms-btn"`, `id="alarms"`, `id="alarm-detail"`, `id="operator"`}},
		{"alarms.js", []string{`data-alarm-count="${s}"`, `id="alarm-list"`, `data-alarm="${esc(a.id)}"`, `data-state="${esc(a.state)}"`,
			`data-severity="${esc(a.severity)}"`, "show() {", "async act(id, action, note", "/api/alarms", "sound?.critical()"}},
		{"alarmdetail.js", []string{"export function nearestCameras(", "data-live="}},
		{"app.js", []string{"this.alarms = new Alarms(", "onAlarm: (ev) => this.alarms.event(ev)", "this.alarms.hello(m)"}},
		{"live.js", []string{"case 'alarm':"}},
		{"keys.js", []string{"...ALARM_SHORTCUTS"}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			src := read(t, tt.file)
			for _, w := range tt.want {
				if !strings.Contains(src, w) {
					t.Errorf("%s lacks %q", tt.file, w)
				}
			}
		})
	}
	en := dictionaries(t)["en"]
	var keys []string
	for _, s := range []string{"critical", "major", "minor", "warning"} {
		keys = append(keys, "alarm.sev."+s)
	}
	for _, s := range []string{"active_unack", "active_ack", "cleared_unack", "cleared_ack"} {
		keys = append(keys, "alarm.state."+s)
	}
	for _, s := range []string{"device_offline", "agent_offline", "stream_failure", "sensor_triggered", "supervision_lost", "power_lost", "threshold"} {
		keys = append(keys, "alarm.source."+s)
	}
	for _, s := range []string{"raise", "repeat", "ack", "assign", "shelve", "unshelve", "clear", "auto_clear", "escalate", "flap"} {
		keys = append(keys, "alarm.action."+s)
	}
	for _, s := range []string{"ack", "assign", "shelve", "unshelve", "clear"} {
		keys = append(keys, "alarm.act_"+s)
	}
	for _, s := range []string{"sev", "state", "count", "source", "device", "site", "district", "age", "assignee"} {
		keys = append(keys, "alarm.col_"+s)
	}
	for _, s := range []string{"15m", "1h", "8h"} {
		keys = append(keys, "alarm.for_"+s)
	}
	for _, k := range keys {
		if _, ok := en[k]; !ok {
			t.Errorf("key %q is used but not in i18n.json", k)
		}
	}
}
