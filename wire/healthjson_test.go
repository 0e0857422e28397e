package wire

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// checkHealthDecoders fails t unless the hand-written parser and
// decodeHealth agree with decodeInto (encoding/json) on payload: whatever
// the parser takes, encoding/json takes with the same value, and
// decodeHealth gives the same value or error. It reports whether the
// parser took payload without falling back.
func checkHealthDecoders(t *testing.T, payload []byte) (fast bool) {
	t.Helper()
	var want Health
	wantErr := decodeInto(payload, &want)

	var got Health
	p := healthParser{data: payload}
	if fast = p.health(&got); fast {
		if wantErr != nil {
			t.Fatalf("parser took what encoding/json refuses (%v): %q", wantErr, payload)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q\nparser:        %+v\nencoding/json: %+v", payload, got, want)
		}
	}

	got = Health{}
	if err := decodeHealth(payload, &got); fmt.Sprint(err) != fmt.Sprint(wantErr) {
		t.Fatalf("%q: decodeHealth: %v, encoding/json: %v", payload, err, wantErr)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%q\ndecodeHealth:  %+v\nencoding/json: %+v", payload, got, want)
	}
	return fast
}

const (
	healthHeader = `"v":1,"agent":"agent-017","boot":1795860000000,"seq":3,"ts":"2026-11-28T09:59:59Z","interval_s":10`
	healthLine   = `{"id":"cam-1","status":"online","since":"2026-11-28T09:58:30Z"}`
)

// withDevices is a report of the given device lines (JSON array elements).
func withDevices(lines string) string { return `{` + healthHeader + `,"devices":[` + lines + `]}` }

// withDetail is a report of one device line with the given detail (a JSON
// string token).
func withDetail(detail string) string {
	return withDevices(`{"id":"cam-1","status":"offline","reason":"probe_error","detail":` + detail + `,"since":"2026-11-28T09:58:30Z"}`)
}

// healthCases are inputs with what the hand-written parser should do with
// them: take them (fast) or leave them to encoding/json.
var healthCases = []struct {
	name    string
	payload string
	fast    bool
}{
	{"compact", withDevices(healthLine), true},
	{"whitespace everywhere", " \t\r\n{ \"v\" : 1 ,\n\"agent\":\"a\" , \"devices\" : [ " + healthLine + " , null ] }\n ", true},
	{"unknown fields", `{` + healthHeader + `,"zone":{"a":[1,-2.5e3,true,false,null,"x\"y\u00e9",{}],"b":{}},"devices":[{"id":"c","new":[[]],"status":"online"}]}`, true},
	{"dropped", `{` + healthHeader + `,"devices":[],"dropped":{"health":3,"events":18446744073709551615,"later":1}}`, true},
	{"nulls", `{"v":1,"agent":null,"boot":null,"seq":null,"ts":null,"interval_s":null,"dropped":null,"devices":[{"id":null,"reason":null,"since":null,"probed":null,"metrics":{"fps":null},"triggered":null},null]}`, true},
	{"devices null", `{` + healthHeader + `,"devices":null}`, true},
	{"empty metrics", withDevices(`{"id":"c","metrics":{}}`), true},
	{"repeated metric", withDevices(`{"id":"c","metrics":{"fps":1,"fps":2}}`), true},
	{"escaped metric name", withDevices(`{"id":"c","metrics":{"f\u0070s":15,"\ud83d\udcf7":1}}`), true},
	{"number forms", withDevices(`{"id":"c","triggered":true,"metrics":{"a":-0,"b":1E2,"c":-0.5e-3,"d":1e-400,"e":123456789012345678901234567890}}`), true},
	{"time with offset", withDevices(`{"id":"c","since":"2026-11-28T10:58:30.123456789+01:00"}`), true},
	{"escapes", withDetail(`"a\"b\\c\/d\b\f\n\r\t \u003cnil\u003e \u0000"`), true},
	{"surrogate pair", withDetail(`"\ud83d\udcf7 \uD83D\uDCF7"`), true},
	{"lone surrogates", withDetail(`"\ud800x \udc00 \ud800\u0041 \ud800\ud800\udc00 \ud800"`), true},
	{"invalid UTF-8", withDetail("\"bad \xff\xfe, surrogate \xed\xa0\x80, cut \xe6\x9d\""), true},
	{"non-ASCII", withDetail(`"Café 東京 📷 ` + "\u2028" + `"`), true},
	{"non-ASCII unknown key", `{` + healthHeader + `,"zoné":1,"devices":[]}`, true},

	{"repeated key", `{` + healthHeader + `,"seq":4,"devices":[]}`, false},
	{"repeated devices merge", `{` + healthHeader + `,"devices":[{"id":"a","status":"online"}],"devices":[{"id":"b"}]}`, false},
	{"key in capitals", `{` + healthHeader + `,"Devices":[` + healthLine + `]}`, false},
	{"unknown key in capitals", `{` + healthHeader + `,"DEVICES2":[],"devices":[]}`, true},
	{"key folding to s", `{"v":1,"ſeq":4,"devices":[]}`, false},
	{"escaped key", `{"v":1,"\u0073eq":4,"devices":[]}`, false},
	{"escaped unknown key", `{"v":1,"\u007a":4,"devices":[]}`, false},
	{"deep unknown field", `{` + healthHeader + `,"x":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}`, false},
	{"deeper than encoding/json goes", `{` + healthHeader + `,"x":` + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + `}`, false},
	{"missing version", `{"agent":"a","devices":[]}`, false},
	{"version 2", `{"v":2,"devices":[]}`, false},
	{"version null", `{"v":null,"devices":[]}`, false},
	{"version 1.0", `{"v":1.0,"devices":[]}`, false},
	{"version string", `{"v":"1","devices":[]}`, false},
	{"seq string", `{"v":1,"seq":"3"}`, false},
	{"seq negative", `{"v":1,"seq":-1}`, false},
	{"boot fraction", `{"v":1,"boot":1e3}`, false},
	{"ts number", `{"v":1,"ts":5}`, false},
	{"ts escaped", `{"v":1,"ts":"2026-11-28T09:59:59\u005a"}`, false},
	{"huge metric", withDevices(`{"metrics":{"fps":1e999}}`), false},
	{"metrics array", withDevices(`{"metrics":[]}`), false},
	{"devices object", `{"v":1,"devices":{}}`, false},
	{"device string", `{"v":1,"devices":["cam-1"]}`, false},
	{"triggered string", withDevices(`{"triggered":"yes"}`), false},
	{"dropped number", `{"v":1,"dropped":1}`, false},
	{"trailing comma", `{"v":1,"devices":[],}`, false},
	{"trailing comma in array", withDevices(healthLine + `,`), false},
	{"leading zero", `{"v":01}`, false},
	{"bare minus", `{"v":1,"x":-}`, false},
	{"no fraction digits", `{"v":1,"x":1.}`, false},
	{"no exponent digits", `{"v":1,"x":1e+}`, false},
	{"leading dot", `{"v":1,"x":.5}`, false},
	{"bad escape", withDetail(`"\x"`), false},
	{"short unicode escape", withDetail(`"\u12"`), false},
	{"control character", withDetail("\"a\tb\""), false},
	{"unterminated string", `{"v":1,"agent":"a`, false},
	{"unterminated object", `{"v":1`, false},
	{"misspelt literal", `{"v":1,"x":nul}`, false},
	{"trailing data", `{"v":1} {"v":1}`, false},
	{"byte order mark", "\ufeff{\"v\":1}", false},
	{"top-level array", `[{"v":1}]`, false},
	{"top-level null", `null`, false},
	{"empty", ``, false},
}

func TestHealthParser(t *testing.T) {
	golden, err := os.ReadFile("testdata/health.json")
	if err != nil {
		t.Fatal(err)
	}
	if !checkHealthDecoders(t, golden) {
		t.Error("parser gave up on testdata/health.json")
	}
	if !checkHealthDecoders(t, healthReport(100)) {
		t.Error("parser gave up on a report as agents encode it")
	}
	for _, tc := range healthCases {
		t.Run(tc.name, func(t *testing.T) {
			if fast := checkHealthDecoders(t, []byte(tc.payload)); fast != tc.fast {
				t.Errorf("parser took it: %v, want %v", fast, tc.fast)
			}
		})
	}
}

// TestHealthParserKnowsEveryField fails when a field is added to a health
// type but not to the parser, which would skip it as unknown.
func TestHealthParserKnowsEveryField(t *testing.T) {
	for _, tc := range []struct {
		typ  reflect.Type
		keys []string
	}{
		{reflect.TypeFor[Health](), healthKeys},
		{reflect.TypeFor[DeviceHealth](), deviceHealthKeys},
		{reflect.TypeFor[Dropped](), droppedKeys},
	} {
		if got := jsonKeys(tc.typ); !slices.Equal(got, tc.keys) {
			t.Errorf("%s has the JSON keys %q, the health parser knows %q", tc.typ, got, tc.keys)
		}
	}
}

func jsonKeys(t reflect.Type) []string {
	var keys []string
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Anonymous {
			keys = append(keys, jsonKeys(f.Type)...)
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		keys = append(keys, name)
	}
	return keys
}

func FuzzHealthDecoderMatchesJSON(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.json")
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(healthReport(5))
	for _, tc := range healthCases {
		if len(tc.payload) < 1000 {
			f.Add([]byte(tc.payload))
		}
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		checkHealthDecoders(t, payload)
		// Whatever encoding/json writes for a report it accepts must take
		// the fast path: agents encode with it.
		var h Health
		if decodeInto(payload, &h) != nil {
			return
		}
		canonical, err := json.Marshal(h)
		if err != nil {
			return // a time outside years 0–9999
		}
		if !checkHealthDecoders(t, canonical) {
			t.Fatalf("parser gave up on encoding/json's own %s", canonical)
		}
	})
}

// healthReport is a report of n devices as an agent sends it: mostly
// cameras streaming fine, a few failing, some sensors.
func healthReport(n int) []byte {
	since := now.Add(-time.Hour)
	lines := make([]DeviceHealth, n)
	for i := range lines {
		d := &lines[i]
		d.Since, d.Probed = since, now.Add(-2*time.Second)
		switch {
		case i%10 == 9:
			d.ID, d.Status, d.Reason = fmt.Sprintf("pir-017-%03d", i), StatusOnline, ReasonNone
			d.Metrics = map[string]float64{MetricCheckinAge: 12, MetricBatteryPct: 87, MetricSignalDBm: -71}
			d.Triggered = i%30 == 9
		case i%20 == 3:
			d.ID, d.Status, d.Reason = fmt.Sprintf("cam-017-%03d", i), StatusOffline, ReasonRefused
			d.Detail = fmt.Sprintf("dial tcp 10.17.0.%d:554: connect: connection refused", i)
			d.Metrics = map[string]float64{MetricProbeFailures: 4}
		case i%20 == 7:
			d.ID, d.Status, d.Reason = fmt.Sprintf("cam-017-%03d", i), StatusDegraded, ReasonLowFrameRate
			d.Detail = "3.2 fps < 5 fps"
			d.Metrics = map[string]float64{MetricTCPMillis: 2.4, MetricRTSPMillis: 31.5, MetricFPS: 3.2, MetricBitrateKbps: 410, MetricFrameAge: 0.3}
		default:
			d.ID, d.Status = fmt.Sprintf("cam-017-%03d", i), StatusOnline
			d.Metrics = map[string]float64{MetricTCPMillis: 1.5, MetricRTSPMillis: 9.25, MetricFPS: 15, MetricBitrateKbps: 1850, MetricFrameAge: 0.07}
		}
	}
	h := Health{Header: header(9), Interval: 10, Devices: lines, Dropped: &Dropped{Health: 2}}
	b, err := json.Marshal(h)
	if err != nil {
		panic(err)
	}
	return b
}

// TestHealthParserSizesDevicesOnce: a report's lines are decoded into a
// slice made for all of them, not grown line by line (the copies were a
// third of what decoding a 100-device report allocated).
func TestHealthParserSizesDevicesOnce(t *testing.T) {
	for _, n := range []int{1, 7, 100} {
		var h Health
		if err := decodeHealth(healthReport(n), &h); err != nil {
			t.Fatal(err)
		}
		if len(h.Devices) != n || cap(h.Devices) != n {
			t.Errorf("%d lines: decoded %d into a slice of capacity %d, want %d of %d", n, len(h.Devices), cap(h.Devices), n, n)
		}
	}
}

// BenchmarkDecodeHealth decodes and validates a 100-device report as
// Decode does, through encoding/json alone and through the hand-written
// parser.
func BenchmarkDecodeHealth(b *testing.B) {
	const devices = 100
	payload := healthReport(devices)
	for _, bc := range []struct {
		name   string
		decode func([]byte, *Health) error
	}{
		{"encoding-json", func(p []byte, h *Health) error { return decodeInto(p, h) }},
		{"hand-written", decodeHealth},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(payload)))
			b.ReportAllocs()
			for b.Loop() {
				var h Health
				if err := bc.decode(payload, &h); err != nil {
					b.Fatal(err)
				}
				if err := h.validate("agent-017", now); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*devices), "ns/sample")
		})
	}
}
