package alarmview

import (
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/citywatch/citywatch/hub/alarm"
)

// FuzzAnnouncement feeds other hubs' announcements, as NATS delivers
// them, to a view: nothing may panic, and the view never holds an alarm
// without an id, nor goes back to an older copy of one.
func FuzzAnnouncement(f *testing.F) {
	at := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	good, _ := json.Marshal(announcement{Hub: "b", Alarm: alarm.Alarm{ID: "Ab-1", Key: "k", Agent: "ag2", State: alarm.ActiveUnack, Changes: 1},
		Transition: alarm.Transition{At: at, Who: alarm.System, Action: alarm.ActRaise, To: alarm.ActiveUnack}})
	f.Add(good)
	f.Add([]byte(`{"hub":"b","alarm":{"id":"Ab-1","changes":-3}}`))
	f.Add([]byte(`{"alarm":{"id":"","changes":1}}`))
	f.Add([]byte(`not json`))
	f.Fuzz(func(t *testing.T, data []byte) {
		engine := alarm.New(nil, alarm.Options{})
		v, err := New(Config{NATSURL: "nats://127.0.0.1:1", Hub: "a", Partitions: 4, Partition: partitionOf},
			Deps{Engine: engine, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		v.onAnnouncement(&nats.Msg{Subject: announceSubject + "b", Data: good})
		v.onAnnouncement(&nats.Msg{Subject: announceSubject + "b", Data: data})
		for id, r := range v.remote {
			if id == "" || r.a.ID != id {
				t.Fatalf("view holds %q as %q", id, r.a.ID)
			}
			if id == "Ab-1" && r.a.Changes < 1 {
				t.Fatalf("Ab-1 went back to changes %d", r.a.Changes)
			}
		}
	})
}

// FuzzCommand feeds routed actions to the hub holding the alarm: nothing
// may panic, and an action it cannot parse changes nothing.
func FuzzCommand(f *testing.F) {
	f.Add([]byte(`{"action":"ack","id":"Aa-1","who":"ann"}`))
	f.Add([]byte(`{"action":"shelve","id":"Aa-1","who":"ann","until":"2000-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"action":"explode","id":"Aa-1","who":"ann"}`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, data []byte) {
		rules, err := alarm.ParseRules([]byte("rules:\n  - source: device_offline\n    severity: major\n"))
		if err != nil {
			t.Fatal(err)
		}
		engine := alarm.New(rules, alarm.Options{IDPrefix: "Aa-"})
		v, err := New(Config{NATSURL: "nats://127.0.0.1:1", Hub: "a", Partitions: 4, Partition: partitionOf},
			Deps{Engine: engine, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		h := &hub{engine: engine, view: v}
		h.camera("ag1", "cam1", "offline")
		_, before, _ := engine.Alarm("Aa-1")
		v.onCommand(&nats.Msg{Data: data}) // no reply subject: the answer goes nowhere
		_, after, _ := engine.Alarm("Aa-1")
		var c command
		if json.Unmarshal(data, &c) != nil && len(after) != len(before) {
			t.Fatalf("an unparsable action changed the alarm: %d → %d transitions", len(before), len(after))
		}
	})
}
