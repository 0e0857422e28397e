package app

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/citywatch/citywatch/hub/audit"
	"github.com/citywatch/citywatch/hub/auth"
)

// TestShiftHandoverAPI hands a shift over through a running hub: an
// operator writes the handover (the report frozen with it), cannot accept
// it, a colleague does, only once, an analyst may not touch handovers, and
// the audit trail has both acts against the accounts.
func TestShiftHandoverAPI(t *testing.T) {
	cfg := testConfig(t)
	cfg.Auth.TOTPRoles = nil
	cfg.Alarms.DB = filepath.Join(cfg.DataDir, "alarms.db")
	hub := run(t, cfg)
	ann := signIn(t, hub, "ann", auth.Operator)
	bob := signIn(t, hub, "bob", auth.Supervisor)
	eve := signIn(t, hub, "eve", auth.Analyst)

	res, body := ann.do(t, hub, http.MethodGet, "api/handover/report", "")
	if res.StatusCode != http.StatusOK || !strings.Contains(body, `"alarms":`) || !strings.Contains(body, `"outages":`) {
		t.Fatalf("report: %d %.300s", res.StatusCode, body)
	}
	res, body = ann.do(t, hub, http.MethodPost, "api/handovers", `{"notes":"gate 3 chatters"}`)
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("submit: %d %s", res.StatusCode, body)
	}
	var h struct {
		ID       int64           `json:"id"`
		Outgoing string          `json:"outgoing"`
		Incoming string          `json:"incoming"`
		Report   json.RawMessage `json:"report"`
	}
	if err := json.Unmarshal([]byte(body), &h); err != nil || h.ID == 0 || h.Outgoing != "ann" || len(h.Report) < 10 {
		t.Fatalf("submitted %s (%v)", body, err)
	}
	accept := func(s *session) int {
		res, _ := s.do(t, hub, http.MethodPost, "api/handovers/"+strconv.FormatInt(h.ID, 10)+"/accept", `{"note":"ok"}`)
		return res.StatusCode
	}
	if got := accept(ann); got != http.StatusConflict {
		t.Errorf("the author accepting: %d, want 409", got)
	}
	if got := accept(eve); got != http.StatusForbidden {
		t.Errorf("an analyst accepting: %d, want 403", got)
	}
	if got := accept(bob); got != http.StatusOK {
		t.Errorf("a colleague accepting: %d, want 200", got)
	}
	if got := accept(bob); got != http.StatusConflict {
		t.Errorf("accepting twice: %d, want 409", got)
	}
	res, body = bob.do(t, hub, http.MethodGet, "api/handovers/"+strconv.FormatInt(h.ID, 10), "")
	if res.StatusCode != http.StatusOK || !strings.Contains(body, `"incoming":"bob"`) || !strings.Contains(body, `"notes":"gate 3 chatters"`) {
		t.Errorf("get: %d %.300s", res.StatusCode, body)
	}
	page, err := hub.Audit().Query(context.Background(), audit.Filter{Action: "handover."})
	if err != nil {
		t.Fatal(err)
	}
	var acts []string
	for _, r := range page.Records {
		acts = append(acts, r.Actor+":"+r.Action+":"+string(r.Outcome))
	}
	got := strings.Join(acts, " ")
	for _, want := range []string{"ann:handover.submit:success", "ann:handover.accept:failure", "bob:handover.accept:success", "bob:handover.accept:failure"} {
		if !strings.Contains(got, want) {
			t.Errorf("audit trail %q lacks %s", got, want)
		}
	}
}
