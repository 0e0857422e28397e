package metricstore

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/wire"
)

var at = time.Date(2026, 11, 28, 9, 59, 59, 123_000_000, time.UTC) // 1795859999123 ms

func TestAppendHealth(t *testing.T) {
	tests := []struct {
		name string
		s    fleet.Sample
		want string
	}{
		{"camera",
			fleet.Sample{Device: "cam-1", Agent: "agent-1", Site: "site-1", District: "Xicheng", Kind: wire.KindCamera,
				Status: wire.StatusDegraded, Metrics: map[string]float64{"fps": 12.5}, At: at},
			"device_health,agent=agent-1,device=cam-1,district=Xicheng,kind=camera status_code=1i,fps=12.5 1795859999123\n"},
		{"free-text district and no kind",
			fleet.Sample{Device: "cam-1", Agent: "a", District: `Dist, with = "odd"\ chars` + "\n", Status: wire.StatusOffline, At: at},
			`device_health,agent=a,device=cam-1,district=Dist\,\ with\ \=\ "odd"/\ chars\n status_code=2i 1795859999123` + "\n"},
		{"unknown status, clashing and unstorable metrics left out",
			fleet.Sample{Device: "s-1", Agent: "a", Status: "from-the-future",
				Metrics: map[string]float64{"status": 1, "status_code": 9, "nan": math.NaN(), "inf": math.Inf(-1)}, At: at},
			"device_health,agent=a,device=s-1 status_code=3i 1795859999123\n"},
		{"large and small values without exponents",
			fleet.Sample{Device: "d", Agent: "a", Status: wire.StatusOnline, Metrics: map[string]float64{"x": 1e21}, At: at},
			"device_health,agent=a,device=d status_code=0i,x=1000000000000000000000 1795859999123\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, ok := appendHealth([]byte("previous\n"), &tt.s)
			if !ok || string(b) != "previous\n"+tt.want {
				t.Errorf("got %q (%v)\nwant %q", b, ok, "previous\n"+tt.want)
			}
		})
	}
}

func TestAppendChange(t *testing.T) {
	lost := []fleet.Device{{ID: "cam-2", Agent: "agent-1", Site: "site-1", District: "D", Kind: wire.KindCamera,
		Status: wire.StatusUnreachable, Reason: wire.ReasonAgentOffline, Reported: wire.StatusOnline}}
	c := fleet.Change{At: at, Kind: fleet.ChangeAgent, From: wire.StatusOnline, To: wire.StatusOffline, Reason: "will",
		Detail: `said "bye"` + "\n" + `C:\`, Agent: &fleet.Agent{ID: "agent-1", Site: "site-1", District: "D"}, Affected: lost}
	b, n := appendChange(nil, &c)
	want := `agent_state,agent=agent-1,district=D,site=site-1 from="online",to="offline",reason="will",detail="said \"bye\"\nC:\\",affected=1i 1795859999123` + "\n" +
		`device_state,agent=agent-1,device=cam-2,district=D,kind=camera,site=site-1 from="online",to="unreachable",reason="agent_offline",detail="said \"bye\"\nC:\\",cause="agent" 1795859999123` + "\n"
	if n != 2 || string(b) != want {
		t.Errorf("got %d lines %q\nwant %q", n, b, want)
	}
}

func TestAppendLive(t *testing.T) {
	b, ok := appendLive(nil, &LiveStat{Camera: "cam-1", Agent: "a", At: at, State: "stopped", Reason: "refused",
		Viewers: 2, FPS: math.NaN(), BytesSent: 10})
	want := `live_stream,agent=a,camera=cam-1 state="stopped",viewers=2i,joins=0i,ttff_ms=0,fps=0,bitrate_kbps=0,packets_lost=0i,loss_pct=0,freezes=0i,bytes_sent=10i,reason="refused" 1795859999123` + "\n"
	if !ok || string(b) != want {
		t.Errorf("got %q\nwant %q", b, want)
	}
}

// FuzzAppendHealth feeds free text (district names, device kinds, metric
// names) to the encoder: every sample must become exactly one line that a
// line-protocol reader splits back into the values given, a backslash
// read as '/' in names and tags.
func FuzzAppendHealth(f *testing.F) {
	f.Add("Xicheng", "camera", "fps", 25.0)
	f.Add(`a\`, "x y", `k,=\`, -0.5)
	f.Add("a\nb\r\tc\f", `"q"`, "m=1 2", 1e300)
	f.Fuzz(func(t *testing.T, district, kind, metric string, v float64) {
		s := fleet.Sample{Device: "cam-1", Agent: "agent-1", District: district, Kind: wire.DeviceKind(kind),
			Status: wire.StatusOnline, Metrics: map[string]float64{metric: v}, At: at}
		b, ok := appendHealth(nil, &s)
		if !ok {
			t.Fatal("no line")
		}
		if strings.Count(string(b), "\n") != 1 || b[len(b)-1] != '\n' {
			t.Fatalf("not one line: %q", b)
		}
		tags, fields, ts := parseLine(t, string(b[:len(b)-1]))
		want := map[string]string{"agent": "agent-1", "device": "cam-1"}
		for k, v := range map[string]string{"district": district, "kind": kind} {
			if v != "" {
				want[k] = stored(v)
			}
		}
		if fmt.Sprint(tags) != fmt.Sprint(want) {
			t.Errorf("tags %v, want %v (line %q)", tags, want, b)
		}
		wantFields := map[string]string{"status_code": "0i"}
		if metric != "" && metric != "status" && metric != "status_code" && !math.IsNaN(v) && !math.IsInf(v, 0) {
			wantFields[stored(metric)] = fmt.Sprint(v)
		}
		got := map[string]string{}
		for k, raw := range fields {
			got[k] = raw
			if k != "status_code" {
				var f float64
				if _, err := fmt.Sscan(raw, &f); err != nil || strings.ContainsAny(raw, "eE") {
					t.Errorf("field %s = %q: not a plain float", k, raw)
				}
				got[k] = fmt.Sprint(f)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(wantFields) {
			t.Errorf("fields %v, want %v (line %q)", got, wantFields, b)
		}
		if ts != "1795859999123" {
			t.Errorf("timestamp %q", ts)
		}
	})
}

// stored is how a name or tag value reads back from InfluxDB.
func stored(s string) string {
	return strings.NewReplacer(`\`, "/", "\n", `\n`, "\t", `\t`, "\r", `\r`, "\f", `\f`).Replace(s)
}

// parseLine splits a line the way InfluxDB 1.8 reads one: unescaped
// spaces separate the series, the fields and the timestamp; unescaped
// commas separate tags and fields; \, \= and \space are unescaped.
func parseLine(t *testing.T, line string) (tags, fields map[string]string, ts string) {
	t.Helper()
	parts := split(line, ' ')
	if len(parts) != 3 {
		t.Fatalf("%d space-separated parts in %q", len(parts), line)
	}
	series, fieldSet := split(parts[0], ','), split(parts[1], ',')
	if series[0] != "device_health" {
		t.Fatalf("measurement %q", series[0])
	}
	kv := func(items []string) map[string]string {
		m := map[string]string{}
		for _, it := range items {
			kvs := split(it, '=')
			if len(kvs) != 2 || kvs[0] == "" || kvs[1] == "" {
				t.Fatalf("bad pair %q in %q", it, line)
			}
			m[unescape(kvs[0])] = unescape(kvs[1])
		}
		return m
	}
	return kv(series[1:]), kv(fieldSet), parts[2]
}

// split cuts s at unescaped sep.
func split(s string, sep byte) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case sep:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

func unescape(s string) string {
	return strings.NewReplacer(`\,`, ",", `\=`, "=", `\ `, " ").Replace(s)
}
