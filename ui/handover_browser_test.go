package ui

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
)

// TestShiftHandoverInBrowser runs the handover view against a fake hub:
// the shift's figures, the alarm open at its end and the camera still
// down are shown; the incoming operator accepts a colleague's handover
// with a note (one request, the note in it) and sees it signed; the
// outgoing operator hands over with notes for the window on screen; and
// the page prints the report and the signatures without its controls.
func TestShiftHandoverInBrowser(t *testing.T) {
	report := map[string]any{
		"from": "2026-12-06T08:00:00Z", "to": "2026-12-06T20:00:00Z", "timezone": "UTC",
		"alarms": map[string]any{
			"total":      map[string]any{"raised": 17, "acked": 15, "cleared": 12, "open": 5, "unacked": 2},
			"severities": []any{map[string]any{"severity": "critical", "raised": 2, "acked": 2, "cleared": 1, "open": 1, "unacked": 0}},
			"districts":  []any{map[string]any{"district": "Xuhui", "raised": 17, "acked": 15, "cleared": 12, "open": 5, "unacked": 2}},
			"open": []any{map[string]any{"id": "A9", "source": "sensor_triggered", "type": "intrusion", "device": "SEN-9", "site": "S-1", "district": "Xuhui",
				"severity": "critical", "priority": 45, "state": "active_ack", "since": "2026-12-06T19:00:00Z", "acked_by": "li"}},
			"operators": []any{map[string]any{"who": "li", "acked": 15, "cleared": 3}},
			"mtta_s":    150,
		},
		"outages": map[string]any{
			"total": map[string]any{"began": 4, "recovered": 3, "ongoing": 1, "mttr_s": 5400},
			"list": []any{map[string]any{"device": "CAM-3", "district": "Xuhui", "site": "S-1", "kind": "camera", "status": "offline",
				"from": "2026-12-06T18:00:00Z", "ongoing": true}},
		},
		"work": []any{map[string]any{"state": "open", "count": 2}},
	}
	pending := map[string]any{"id": 7, "from": "2026-12-05T20:00:00Z", "to": "2026-12-06T08:00:00Z", "outgoing": "wang",
		"written_at": "2026-12-06T08:01:00Z", "notes": "gate 3 contact chatters; crew 2 at 09:00", "scope": map[string]any{"all": true}}
	var (
		mu     sync.Mutex
		posts  = map[string]map[string]any{}
		list   = []any{pending}
		byID   = map[string]any{"7": pending}
		mine   map[string]any
		record = func(path string, r *http.Request) map[string]any {
			var body map[string]any
			json.NewDecoder(r.Body).Decode(&body)
			mu.Lock()
			posts[path] = body
			mu.Unlock()
			return body
		}
	)
	with := func(h map[string]any, kv ...any) map[string]any {
		out := map[string]any{"report": report}
		for k, v := range h {
			out[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			out[kv[i].(string)] = kv[i+1]
		}
		return out
	}
	mux := operatorMux([]string{"status.read", "alarm.read", "shift.handover"}, nil, nil)
	mux.HandleFunc("GET /api/handover/report", serveJSON(report))
	mux.HandleFunc("GET /api/handovers", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		serveJSON(map[string]any{"handovers": list})(w, r)
	})
	mux.HandleFunc("GET /api/handovers/{id}", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		serveJSON(with(byID[r.PathValue("id")].(map[string]any)))(w, r)
	})
	mux.HandleFunc("POST /api/handovers/7/accept", func(w http.ResponseWriter, r *http.Request) {
		body := record("accept", r)
		mu.Lock()
		defer mu.Unlock()
		acc := with(pending, "incoming", "li", "accepted_at", "2026-12-06T08:05:00Z", "accept_note", body["note"])
		delete(acc, "report")
		list[0], byID["7"] = acc, acc
		serveJSON(with(acc))(w, r)
	})
	mux.HandleFunc("POST /api/handovers", func(w http.ResponseWriter, r *http.Request) {
		body := record("submit", r)
		mu.Lock()
		defer mu.Unlock()
		mine = map[string]any{"id": 8, "from": body["from"], "to": body["to"], "outgoing": "li", "written_at": "2026-12-06T20:00:05Z", "notes": body["notes"], "scope": map[string]any{"all": true}}
		list = append([]any{mine}, list...)
		byID["8"] = mine
		w.WriteHeader(http.StatusCreated)
		serveJSON(with(mine))(w, r)
	})
	srv := serveConsole(t, mux)

	pg := openPage(t)
	pg.do("open the handover", chromedp.EmulateViewport(1440, 900), chromedp.Navigate(srv.URL+"/"),
		chromedp.WaitVisible(`#view-handover`), chromedp.KeyEvent("h"), chromedp.WaitVisible(`#handover`))
	pg.poll(`document.querySelector('#ho-alarm-totals [data-k="raised"] b')?.textContent === '17'`, 10*time.Second)
	for expr, want := range map[string]string{
		`document.querySelector('#ho-alarm-totals [data-k="mtta"] b').textContent`:     "3 min",
		`document.querySelector('#ho-open tbody tr').textContent.replace(/\s+/g, ' ')`: "SEN-9",
		`document.querySelector('#ho-outages tbody tr.ho-down').textContent`:           "Still down",
		`document.querySelector('#ho-pending').textContent`:                            "gate 3 contact chatters",
		`document.querySelector('#ho-work').textContent`:                               "2",
	} {
		if got := pg.str(expr); !strings.Contains(got, want) {
			t.Errorf("%s = %q, want it to contain %q", expr, got, want)
		}
	}

	pg.do("accept wang's handover", chromedp.SendKeys(`#ho-pending textarea`, "taken over"), chromedp.Click(`#ho-accept-7`))
	pg.poll(`document.querySelector('#ho-in-who')?.textContent.includes('li')`, 10*time.Second)
	if got := pg.str(`document.querySelector('#ho-record-notes').textContent`); got != pending["notes"] {
		t.Errorf("record notes %q", got)
	}
	if got := pg.str(`String(document.querySelector('#ho-pending').hidden)`); got != "true" {
		t.Errorf("the accepted handover is still offered")
	}

	pg.do("back to the current shift and hand over", chromedp.Click(`#ho-current`), chromedp.WaitVisible(`#ho-notes`),
		chromedp.SendKeys(`#ho-notes`, "CAM-3 still down; crew called"), chromedp.Click(`#ho-hand`))
	pg.poll(`document.querySelector('#ho-out-who')?.textContent.includes('li') && !document.querySelector('#ho-ok').hidden`, 10*time.Second)
	mu.Lock()
	acc, sub := posts["accept"], posts["submit"]
	mu.Unlock()
	if acc["note"] != "taken over" {
		t.Errorf("accept body %v", acc)
	}
	if sub["notes"] != "CAM-3 still down; crew called" || sub["from"] != report["from"] || sub["to"] != report["to"] {
		t.Errorf("submit body %v, want the notes and the window on screen", sub)
	}

	if _, err := chromedp.Call(pg.ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{Media: "print"}); err != nil {
		t.Fatalf("print media: %v", err)
	}
	if got := pg.str(`['#ho-alarm-totals', '#ho-record', '#ho-outages', '#ho-list', '.v-top button', '#ho-form'].map((s) => s + ':' + (document.querySelector(s).offsetParent !== null)).join(' ')`); got != "#ho-alarm-totals:true #ho-record:true #ho-outages:true #ho-list:false .v-top button:false #ho-form:false" {
		t.Errorf("printed: %s", got)
	}
	pg.noExceptions()
}
