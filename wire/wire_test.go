package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

var update = flag.Bool("update", false, "rewrite the golden payloads in testdata/")

var now = time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)

func header(seq uint64) Header {
	return Header{V: Version, Agent: "agent-017", Boot: 1795860000000, Seq: seq, TS: now.Add(-time.Second)}
}

// examples are the canonical payloads of every channel; docs/protocol.md
// shows the same files.
func examples() map[string]struct {
	ch Channel
	v  any
} {
	since := now.Add(-90 * time.Second)
	return map[string]struct {
		ch Channel
		v  any
	}{
		"state_birth.json": {ChannelState, State{Header: header(1), State: AgentOnline, Conn: 1, Interval: 10, Site: "site-017", Version: "0.1.0"}},
		"state_will.json":  {ChannelState, State{Header: Header{V: Version, Agent: "agent-017", Boot: 1795860000000, TS: now.Add(-time.Hour)}, State: AgentOffline, Will: true, Conn: 1}},
		"inventory.json": {ChannelInventory, Inventory{Header: header(2),
			Site: Site{ID: "site-017", Name: "Riverside Metro B", District: "Riverside", Location: Location{Lat: 30.5931, Lon: 114.3054},
				Names: Names{"zh-CN": "滨江地铁站 B 口"}, DistrictNames: Names{"zh-CN": "滨江区"}, PowerFeed: "feed-riverside-3"},
			Topology: []Node{
				{ID: "up-017", Kind: NodeUplink, Name: "Site uplink"},
				{ID: "sw-017-1", Kind: NodeSwitch, Name: "Platform switch", Parent: "up-017"},
			},
			Devices: []Device{
				{ID: "cam-017-01", Name: "Gate east", Names: Names{"zh-CN": "东门"}, Kind: KindCamera, District: "Riverside", Location: Location{Lat: 30.5932, Lon: 114.3056}, Criticality: 4,
					Camera: &CameraInfo{Heading: 90, FOV: 70, Range: 40, Snapshot: true}, Parent: "sw-017-1",
					Streams: []Stream{{Role: StreamMain, Codec: CodecH265, Profile: "Main", Width: 2560, Height: 1440}, {Role: StreamSub, Codec: CodecH264, Profile: "High", Width: 640, Height: 360}}},
				{ID: "pir-017-01", Name: "Platform PIR", Kind: KindSensor, SensorKind: SensorIntrusion, District: "Riverside", Location: Location{Lat: 30.5930, Lon: 114.3052}, Criticality: 3, Parent: "sw-017-1"},
			}}},
		"health.json": {ChannelHealth, Health{Header: header(3), Interval: 10, Devices: []DeviceHealth{
			{ID: "cam-017-01", Status: StatusOnline, Since: since, Probed: now.Add(-2 * time.Second),
				Metrics: map[string]float64{MetricTCPMillis: 1.2, MetricRTSPMillis: 8.5, MetricFPS: 15, MetricBitrateKbps: 1850}},
			{ID: "pir-017-01", Status: StatusOffline, Reason: ReasonSupervisionLost, Detail: "no check-in for 31s", Since: since,
				Metrics: map[string]float64{MetricCheckinAge: 31}},
		}}},
		"event_status.json":    {ChannelEvents, Event{Header: header(4), Device: "cam-017-01", Type: EventStatus, From: StatusOnline, To: StatusOffline, Reason: ReasonRefused, Detail: "dial tcp 10.17.0.21:554: connection refused", At: now.Add(-2 * time.Second)}},
		"event_triggered.json": {ChannelEvents, Event{Header: header(5), Device: "pir-017-01", Type: EventTriggered, At: now.Add(-time.Second)}},
		"command_probe.json":   {ChannelCommands, Command{V: Version, ID: "cmd-7f3a", TS: now, Type: CommandProbe, Devices: []string{"cam-017-01"}}},
		"command_live_start.json": {ChannelCommands, Command{V: Version, ID: "cmd-7f3b", TS: now, Type: CommandLiveStart,
			Devices: []string{"cam-017-01"}, Session: "ls-5d21", SDP: "v=0\r\no=- 4611 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 102\r\na=recvonly\r\na=rtpmap:102 H264/90000\r\n"}},
		"command_live_stop.json": {ChannelCommands, Command{V: Version, ID: "cmd-7f3c", TS: now, Type: CommandLiveStop, Session: "ls-5d21", Reason: ReasonLiveStopped}},
		"live_answer.json": {ChannelLive, Live{Header: header(6), Session: "ls-5d21", Device: "cam-017-01", Type: LiveAnswer, Stream: StreamMain,
			SDP: "v=0\r\no=- 8812 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 102\r\na=sendonly\r\na=rtpmap:102 H264/90000\r\n"}},
		"live_candidate.json": {ChannelLive, Live{Header: header(7), Session: "ls-5d21", Device: "cam-017-01", Type: LiveCandidate,
			Candidate: &ICECandidate{Candidate: "candidate:1 1 udp 2130706431 127.0.0.1 50123 typ host", SDPMid: ptr("0"), SDPMLineIndex: ptr(uint16(0))}}},
		"live_stopped.json": {ChannelLive, Live{Header: header(8), Session: "ls-5d21", Device: "cam-017-01", Type: LiveStopped,
			Reason: ReasonRefused, Detail: "camera closed the RTSP connection"}},
		"command_snapshot.json": {ChannelCommands, Command{V: Version, ID: "cmd-7f3d", TS: now, Type: CommandSnapshot, Devices: []string{"cam-017-01"}}},
		"snapshot.json": {ChannelSnapshot, Snapshot{Header: header(9), Request: "cmd-7f3d", Device: "cam-017-01",
			JPEG: []byte("\xFF\xD8\xFF\xE0\x00\x10JFIF\x00\x01")}},
		"snapshot_error.json": {ChannelSnapshot, Snapshot{Header: header(10), Request: "cmd-7f3e", Device: "cam-017-01",
			Error: "GET snapshot URL: 401 Unauthorized"}},
	}
}

func TestGoldenPayloadsDecode(t *testing.T) {
	for name, ex := range examples() {
		t.Run(name, func(t *testing.T) {
			want, err := json.MarshalIndent(ex.v, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, '\n')
			path := filepath.Join("testdata", name)
			if *update {
				if err := os.WriteFile(path, want, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./wire -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("golden %s differs from the encoding of the example:\n%s\nwant:\n%s", path, got, want)
			}
			m, err := Decode(Topic("agent-017", ex.ch), got, now)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if m.Channel != ex.ch || m.Agent != "agent-017" {
				t.Errorf("decoded channel %q agent %q", m.Channel, m.Agent)
			}
			// Round trip: decoding and re-encoding yields the same bytes.
			var back any
			switch ex.ch {
			case ChannelState:
				back = m.State
			case ChannelInventory:
				back = m.Inventory
			case ChannelHealth:
				back = m.Health
			case ChannelEvents:
				back = m.Event
			case ChannelCommands:
				back = m.Command
			case ChannelLive:
				back = m.Live
			case ChannelSnapshot:
				back = m.Snapshot
			}
			again, _ := json.MarshalIndent(back, "", "  ")
			if !bytes.Equal(append(again, '\n'), got) {
				t.Errorf("round trip changed the payload:\n%s", again)
			}
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	good, err := os.ReadFile("testdata/health.json")
	if err != nil {
		t.Fatal(err)
	}
	healthTopic := Topic("agent-017", ChannelHealth)
	replace := func(old, new string) []byte {
		if !bytes.Contains(good, []byte(old)) {
			t.Fatalf("golden health.json lacks %q", old)
		}
		return bytes.Replace(good, []byte(old), []byte(new), 1)
	}
	tests := []struct {
		name    string
		topic   string
		payload []byte
		want    RejectReason
	}{
		{"live answer with a third stream", Topic("agent-017", ChannelLive), liveAnswer(t, `"stream": "main"`, `"stream": "third"`), RejectInvalid},
		{"live stopped naming a stream", Topic("agent-017", ChannelLive), liveAnswer(t, `"type": "answer"`, `"type": "stopped"`), RejectInvalid},
		{"oversized", healthTopic, append(bytes.Repeat([]byte(" "), MaxPayload), good...), RejectTooLarge},
		{"outside prefix", "other/agent-017/health", good, RejectBadTopic},
		{"extra level", Prefix + "agent-017/health/x", good, RejectBadTopic},
		{"unknown channel", Prefix + "agent-017/telemetry", good, RejectBadTopic},
		{"wildcard agent", Prefix + "+/health", good, RejectBadTopic},
		{"empty agent", Prefix + "/health", good, RejectBadTopic},
		{"not json", healthTopic, []byte("{\"v\":1,"), RejectMalformed},
		{"array", healthTopic, []byte("[1,2]"), RejectMalformed},
		{"trailing data", healthTopic, append(append([]byte{}, good...), []byte(`{"v":1}`)...), RejectMalformed},
		{"NaN literal", healthTopic, replace(`"fps": 15`, `"fps": NaN`), RejectMalformed},
		{"huge number", healthTopic, replace(`"fps": 15`, `"fps": 1e999`), RejectMalformed},
		{"number as string", healthTopic, replace(`"fps": 15`, `"fps": "15"`), RejectMalformed},
		{"missing version", healthTopic, replace(`"v": 1,`, ``), RejectBadVersion},
		{"version 2", healthTopic, replace(`"v": 1,`, `"v": 2,`), RejectBadVersion},
		{"spoofed agent", Topic("agent-018", ChannelHealth), good, RejectAgentMismatch},
		{"future ts", healthTopic, replace(`"ts": "2026-11-28T09:59:59Z"`, `"ts": "2026-11-28T11:00:00Z"`), RejectFuture},
		{"future since", healthTopic, replace(`"since": "2026-11-28T09:58:30Z"`, `"since": "2027-01-01T00:00:00Z"`), RejectFuture},
		{"missing ts", healthTopic, replace(`"ts": "2026-11-28T09:59:59Z",`, ``), RejectInvalid},
		{"zero boot", healthTopic, replace(`"boot": 1795860000000`, `"boot": 0`), RejectInvalid},
		{"bad status", healthTopic, replace(`"status": "online"`, `"status": "fine"`), RejectInvalid},
		{"agent claims unreachable", healthTopic, replace(`"status": "online"`, `"status": "unreachable"`), RejectInvalid},
		{"bad device id", healthTopic, replace(`"id": "cam-017-01"`, `"id": "cam 01/../x"`), RejectInvalid},
		{"duplicate device", healthTopic, replace(`"id": "pir-017-01"`, `"id": "cam-017-01"`), RejectInvalid},
		{"zero interval", healthTopic, replace(`"interval_s": 10`, `"interval_s": 0`), RejectInvalid},
		{"bad metric name", healthTopic, replace(`"fps": 15`, `"f p s": 15`), RejectInvalid},
		{"long detail", healthTopic, replace(`"no check-in for 31s"`, `"`+strings.Repeat("x", MaxDetailLen+1)+`"`), RejectInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode(tt.topic, tt.payload, now)
			if err == nil {
				t.Fatal("accepted")
			}
			if got := ReasonOf(err); got != tt.want {
				t.Errorf("reason %q (%v), want %q", got, err, tt.want)
			}
		})
	}
}

func TestDecodeInventoryRejects(t *testing.T) {
	good, err := os.ReadFile("testdata/inventory.json")
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string][2]string{
		"sensor kind unknown":    {`"sensor_kind": "intrusion"`, `"sensor_kind": "laser"`},
		"kind unknown":           {`"kind": "camera"`, `"kind": "drone"`},
		"latitude out of range":  {`"lat": 30.5932`, `"lat": 91`},
		"criticality 0":          {`"criticality": 4`, `"criticality": 0`},
		"heading 360":            {`"heading": 90`, `"heading": 360`},
		"no district":            {`"district": "Riverside",`, `"district": "",`},
		"duplicate id":           {`"id": "pir-017-01"`, `"id": "cam-017-01"`},
		"bad site id":            {`"id": "site-017"`, `"id": ""`},
		"bad power feed":         {`"power_feed": "feed-riverside-3"`, `"power_feed": "feed 3"`},
		"node kind unknown":      {`"kind": "uplink"`, `"kind": "router"`},
		"node parent unknown":    {`"parent": "up-017"`, `"parent": "up-999"`},
		"topology cycle":         {`"name": "Site uplink"`, `"name": "Site uplink", "parent": "sw-017-1"`},
		"self parent":            {`"name": "Site uplink"`, `"name": "Site uplink", "parent": "up-017"`},
		"device parent unknown":  {`"parent": "sw-017-1"`, `"parent": "sw-017-9"`},
		"duplicate node":         {`"id": "up-017"`, `"id": "sw-017-1"`},
		"installed not a date":   {`"criticality": 4`, `"criticality": 4, "installed": "last spring"`},
		"serial too long":        {`"criticality": 4`, `"criticality": 4, "serial": "` + strings.Repeat("9", MaxNameLen+1) + `"`},
		"stream role unknown":    {`"role": "sub"`, `"role": "third"`},
		"stream without codec":   {`"codec": "H264"`, `"codec": ""`},
		"stream codec too long":  {`"codec": "H264"`, `"codec": "` + strings.Repeat("H", 33) + `"`},
		"stream width negative":  {`"width": 640`, `"width": -640`},
		"stream height past 16K": {`"height": 360`, `"height": 16385`},
		"two main streams":       {`"role": "sub"`, `"role": "main"`},
		"sensor with streams":    {`"sensor_kind": "intrusion"`, `"sensor_kind": "intrusion", "streams": [{"role": "main", "codec": "H264"}]`},
		"too many streams":       {`"streams": [`, `"streams": [` + strings.Repeat(`{"role": "sub", "codec": "H264"}, `, MaxStreams)},
		// Localised names: keys are language tags, values short printable text.
		"names tag not a language": {`"zh-CN": "东门"`, `"chinese": "东门"`},
		"names tag empty":          {`"zh-CN": "东门"`, `"": "东门"`},
		"names tag with a space":   {`"zh-CN": "东门"`, `"zh CN": "东门"`},
		"names value empty":        {`"zh-CN": "东门"`, `"zh-CN": ""`},
		"names value too long":     {`"zh-CN": "东门"`, `"zh-CN": "` + strings.Repeat("门", MaxNameLen/3+1) + `"`},
		"names value control char": {`"zh-CN": "东门"`, `"zh-CN": "东\n门"`},
		"names value null":         {`"zh-CN": "东门"`, `"zh-CN": "东\u0000门"`},
		"names too many languages": {`"zh-CN": "东门"`, manyNames(MaxNames + 1)},
		"site names bad tag":       {`"zh-CN": "滨江地铁站 B 口"`, `"zh_CN": "滨江地铁站 B 口"`},
		"site names control char":  {`"zh-CN": "滨江地铁站 B 口"`, `"zh-CN": "滨江\u007f地铁站"`},
		"district names empty":     {`"zh-CN": "滨江区"`, `"zh-CN": ""`},
		"district names bad tag":   {`"zh-CN": "滨江区"`, `"zh-CN-": "滨江区"`},
	}
	for name, r := range tests {
		t.Run(name, func(t *testing.T) {
			if !bytes.Contains(good, []byte(r[0])) {
				t.Fatalf("golden lacks %q", r[0])
			}
			p := bytes.Replace(good, []byte(r[0]), []byte(r[1]), 1)
			if _, err := Decode(Topic("agent-017", ChannelInventory), p, now); ReasonOf(err) != RejectInvalid {
				t.Errorf("got %v, want an invalid reject", err)
			}
		})
	}
}

// liveAnswer is the golden live answer with old replaced by new.
func liveAnswer(t *testing.T, old, new string) []byte {
	t.Helper()
	good, err := os.ReadFile("testdata/live_answer.json")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(good, []byte(old)) {
		t.Fatalf("golden live_answer.json lacks %q", old)
	}
	return bytes.Replace(good, []byte(old), []byte(new), 1)
}

func manyNames(n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%q: \"name %d\"", fmt.Sprintf("x%c", 'a'+i), i)
	}
	return b.String()
}

// TestDecodeInventoryNames: localised names of a site, its district and a
// device arrive as sent, within the limits.
func TestDecodeInventoryNames(t *testing.T) {
	good, err := os.ReadFile("testdata/inventory.json")
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		old, new string
		want     Names // the device cam-017-01's names
	}{
		"golden":   {``, ``, Names{"zh-CN": "东门"}},
		"several":  {`"zh-CN": "东门"`, `"zh-CN": "东门", "en": "Gate east", "zh-Hant-TW": "東門"`, Names{"zh-CN": "东门", "en": "Gate east", "zh-Hant-TW": "東門"}},
		"the most": {`"zh-CN": "东门"`, manyNames(MaxNames), nil},
		"longest":  {`"zh-CN": "东门"`, `"zh-CN": "` + strings.Repeat("x", MaxNameLen) + `"`, Names{"zh-CN": strings.Repeat("x", MaxNameLen)}},
		"none": {`"names": {
        "zh-CN": "东门"`, `"other": {
        "zh-CN": "东门"`, nil},
		"empty object":     {`"zh-CN": "东门"`, ``, Names{}},
		"three-letter tag": {`"zh-CN": "东门"`, `"yue": "東門"`, Names{"yue": "東門"}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if !bytes.Contains(good, []byte(tt.old)) {
				t.Fatalf("golden lacks %q", tt.old)
			}
			p := bytes.Replace(good, []byte(tt.old), []byte(tt.new), 1)
			m, err := Decode(Topic("agent-017", ChannelInventory), p, now)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			inv := m.Inventory
			if inv.Site.Names["zh-CN"] != "滨江地铁站 B 口" || inv.Site.DistrictNames["zh-CN"] != "滨江区" {
				t.Errorf("site names %v, district names %v", inv.Site.Names, inv.Site.DistrictNames)
			}
			if got := inv.Devices[0].Names; tt.want != nil && !maps.Equal(got, tt.want) {
				t.Errorf("device names %v, want %v", got, tt.want)
			}
		})
	}
}

func TestWillMustSayOffline(t *testing.T) {
	p := []byte(`{"v":1,"agent":"a","boot":5,"seq":0,"ts":"2026-11-28T09:00:00Z","state":"online","will":true,"conn":1}`)
	if _, err := Decode(Topic("a", ChannelState), p, now); ReasonOf(err) != RejectInvalid {
		t.Fatalf("got %v", err)
	}
}

func TestValidID(t *testing.T) {
	for _, id := range []string{"a", "cam-001", "site_7.b", strings.Repeat("x", MaxIDLen)} {
		if err := ValidID(id); err != nil {
			t.Errorf("ValidID(%q) = %v", id, err)
		}
	}
	for _, id := range []string{"", ".", "..", ".hidden", "a/b", "a+b", "#", "ü", "a b", strings.Repeat("x", MaxIDLen+1)} {
		if ValidID(id) == nil {
			t.Errorf("ValidID(%q) accepted", id)
		}
	}
}

func TestTopicRoundTrip(t *testing.T) {
	for _, ch := range []Channel{ChannelState, ChannelInventory, ChannelHealth, ChannelEvents, ChannelCommands, ChannelLive, ChannelSnapshot} {
		a, c, err := ParseTopic(Topic("agent-1", ch))
		if err != nil || a != "agent-1" || c != ch {
			t.Errorf("ParseTopic(Topic(agent-1, %s)) = %q, %q, %v", ch, a, c, err)
		}
	}
}

func FuzzDecode(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.json")
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		for _, ch := range []Channel{ChannelState, ChannelInventory, ChannelHealth, ChannelEvents, ChannelCommands, ChannelLive, ChannelSnapshot} {
			f.Add(Topic("agent-017", ch), b)
		}
	}
	f.Add("citywatch/v1/agents/x/health", []byte(`{"v":1}`))
	// Localised names beside the golden ones: a tag of subtags, a name at
	// the limit and one with a control character.
	f.Add(Topic("agent-017", ChannelInventory), []byte(`{"v":1,"agent":"agent-017","boot":1795860000000,"seq":2,"ts":"2026-11-28T09:59:59Z",`+
		`"site":{"id":"s","district":"D","district_names":{"zh-Hant-TW":"區","zh-CN":"区"},"location":{"lat":1,"lon":1},"names":{"zh-CN":"站\u0007"}},`+
		`"devices":[{"id":"c","kind":"camera","district":"D","location":{"lat":1,"lon":1},"criticality":1,"names":{"en":"`+strings.Repeat("n", MaxNameLen)+`"}}]}`))
	f.Fuzz(func(t *testing.T, topic string, payload []byte) {
		m, err := Decode(topic, payload, now)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %T is not *wire.Error: %v", err, err)
			}
			return
		}
		// Whatever was accepted must satisfy the contract's invariants.
		if ValidID(m.Agent) != nil {
			t.Fatalf("accepted invalid agent id %q", m.Agent)
		}
		if h := m.Header(); h != nil {
			if h.Agent != m.Agent || h.V != Version || h.TS.Sub(now) > MaxClockSkew {
				t.Fatalf("accepted header %+v on topic %q", h, topic)
			}
		}
		if inv := m.Inventory; inv != nil {
			all := []Names{inv.Site.Names, inv.Site.DistrictNames}
			for _, d := range inv.Devices {
				all = append(all, d.Names)
			}
			for _, n := range all {
				for tag, name := range n {
					if len(n) > MaxNames || !langTag.MatchString(tag) || name == "" || len(name) > MaxNameLen || !utf8.ValidString(name) {
						t.Fatalf("accepted names %q", n)
					}
				}
			}
		}
		if m.Health != nil {
			for _, d := range m.Health.Devices {
				if !d.Status.Valid() || d.Status == StatusUnreachable || ValidID(d.ID) != nil {
					t.Fatalf("accepted device line %+v", d)
				}
			}
		}
	})
}

// TestProtocolDocShowsGoldenPayloads keeps docs/protocol.md honest: every
// example there is the current encoding of a golden payload.
func TestProtocolDocShowsGoldenPayloads(t *testing.T) {
	doc, err := os.ReadFile("../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	for name := range examples() {
		golden, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(doc, bytes.TrimSpace(golden)) {
			t.Errorf("docs/protocol.md does not show testdata/%s as it is now", name)
		}
	}
}

func ptr[T any](v T) *T { return &v }

// A snapshot carries a JPEG or an error, never both or neither, and a
// picture that is not a JPEG or too large is refused.
func TestSnapshotRejects(t *testing.T) {
	topic := Topic("agent-017", ChannelSnapshot)
	h := `"v":1,"agent":"agent-017","boot":1764320000000,"seq":11,"ts":"2026-11-28T09:00:00Z"`
	big := make([]byte, MaxSnapshot+1)
	copy(big, "\xFF\xD8\xFF")
	bigJSON, _ := json.Marshal(big)
	for name, p := range map[string]string{
		"neither":    `{` + h + `,"request":"r1","device":"cam-1"}`,
		"both":       `{` + h + `,"request":"r1","device":"cam-1","jpeg":"/9j/4AAQ","error":"x"}`,
		"not jpeg":   `{` + h + `,"request":"r1","device":"cam-1","jpeg":"PGh0bWw+"}`,
		"no request": `{` + h + `,"device":"cam-1","error":"x"}`,
		"too large":  `{` + h + `,"request":"r1","device":"cam-1","jpeg":` + string(bigJSON) + `}`,
	} {
		if _, err := Decode(topic, []byte(p), now); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
