package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/citywatch/citywatch/agent/sim"
	"github.com/citywatch/citywatch/hub/app"
	"github.com/citywatch/citywatch/hub/audit"
	"github.com/citywatch/citywatch/hub/auth"
	"github.com/citywatch/citywatch/hub/config"
	"github.com/citywatch/citywatch/hub/identity"
	"github.com/citywatch/citywatch/internal/testenv"
	"github.com/citywatch/citywatch/wire"
)

// browserAccount makes an account with testPassword for signing in from a
// browser.
func browserAccount(t *testing.T, hub *app.App, name string, role auth.Role, scope auth.Scope) {
	t.Helper()
	if _, _, err := hub.Identity().AddAccount(context.Background(), cliActor, identity.AccountSpec{
		Name: name, Role: role, Scope: scope, Password: testPassword, OwnPassword: true,
	}); err != nil {
		t.Fatal(err)
	}
}

// consoleAs opens the console in a new Chromium and signs name in with
// testPassword, returning once the monitoring console is live.
func consoleAs(t *testing.T, hub *app.App, name string, within time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(testenv.Chromium(t), within)
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx,
		chromedp.Navigate(hub.ConsoleURL()),
		chromedp.WaitVisible(`#login-user`),
		chromedp.SendKeys(`#login-user`, name),
		chromedp.SendKeys(`#login-pass`, testPassword),
		chromedp.Click(`#login-submit`),
		chromedp.WaitVisible(`body[data-view="console"] #live[data-state="live"]`),
	); err != nil {
		t.Fatalf("%s could not sign in to the console: %v", name, err)
	}
	return ctx
}

// totpCode is the code of secret for the step at t.
func totpCode(t *testing.T, secret string, at time.Time) string {
	t.Helper()
	code, err := totp.GenerateCodeCustom(secret, at, totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		t.Fatal(err)
	}
	return code
}

// strings of a JS array expression.
func jsStrings(t *testing.T, ctx context.Context, expr string) []string {
	t.Helper()
	out, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](expr))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// TestSecondFactorAndScopeInChromium signs an operator of one district in
// with a password and a second factor it enrols on the way, and checks in
// a real Chromium that the table, the alarm desk, the live feed and the
// video wall show that district only while faults strike two districts;
// then it signs out, and signs in again with the password and a code.
func TestSecondFactorAndScopeInChromium(t *testing.T) {
	s := startStack(t, stackOptions{city: smallCity, live: true, hubCfg: func(c *config.Config) {
		quickAlarms(t)(c)
		c.Auth.TOTPRoles = []string{"operator"}
	}})
	s.waitAllOnline(t)
	districts := map[string][]string{} // cameras by district
	var mine, other string
	for _, d := range s.hub.Fleet().Devices() {
		if d.Kind == wire.KindCamera {
			districts[d.District] = append(districts[d.District], d.ID)
		}
	}
	for d := range districts {
		if mine == "" {
			mine = d
		} else if other == "" && d != mine {
			other = d
		}
	}
	if other == "" {
		t.Fatalf("the city has cameras in %d districts, want 2", len(districts))
	}
	var inMine []string
	for _, d := range s.hub.Fleet().Devices() {
		if d.District == mine {
			inMine = append(inMine, d.ID)
		}
	}
	slices.Sort(inMine)
	browserAccount(t, s.hub, "north-op", auth.Operator, auth.Scope{Districts: []string{mine}})

	browser := testenv.Chromium(t)
	ctx, cancel := context.WithTimeout(browser, 3*time.Minute)
	defer cancel()
	// First sign-in: the password, then the hub asks for a second factor
	// to be enrolled before anything else.
	if err := chromedp.Do(ctx,
		chromedp.Navigate(s.hub.ConsoleURL()),
		chromedp.WaitVisible(`#login-user`),
		chromedp.SendKeys(`#login-user`, "north-op"),
		chromedp.SendKeys(`#login-pass`, testPassword),
		chromedp.Click(`#login-submit`),
		chromedp.WaitVisible(`#totp-qr`),
	); err != nil {
		t.Fatalf("enrolment did not start: %v", err)
	}
	secret, err := chromedp.Run(ctx, chromedp.Text(`#totp-secret`))
	if err != nil {
		t.Fatal(err)
	}
	secret = strings.ReplaceAll(strings.TrimSpace(secret), " ", "")
	enrolled := time.Now()
	if err := chromedp.Do(ctx,
		chromedp.SendKeys(`#totp-code`, totpCode(t, secret, enrolled)),
		chromedp.Click(`#totp-confirm`),
		chromedp.WaitVisible(`#recovery-codes`),
		chromedp.Click(`#recovery-done`),
		chromedp.WaitVisible(`body[data-view="console"] #live[data-state="live"]`),
		chromedp.WaitVisible(`#devices tr[data-device]`),
	); err != nil {
		t.Fatalf("enrolment did not finish: %v", err)
	}
	who, err := chromedp.Run(ctx, chromedp.Text(`#whoami`))
	if err != nil || !strings.Contains(who, "north-op") {
		t.Errorf("whoami %q (%v)", who, err)
	}
	total, err := chromedp.Run(ctx, chromedp.AttributeValue(`[data-count="total"]`, "data-value"))
	if err != nil || total.Value != fmt.Sprint(len(inMine)) {
		t.Errorf("the console counts %v devices, want %d of %s: %v", total.Value, len(inMine), mine, err)
	}
	rows := jsStrings(t, ctx, `[...document.querySelectorAll('#devices tr[data-device]')].map(r => r.dataset.device)`)
	for _, id := range rows {
		if !slices.Contains(inMine, id) {
			t.Errorf("row %s is not in %s", id, mine)
		}
	}

	// Faults in both districts: only the operator's reach its console.
	mineCam, otherCam := districts[mine][0], districts[other][0]
	for _, cam := range []string{mineCam, otherCam} {
		if err := s.sim.Fault(sim.Fault{Device: cam, Fault: sim.FaultOffline}); err != nil {
			t.Fatal(err)
		}
	}
	// The hub raised both alarms (seen through the administrator's token).
	eventually(t, 60*time.Second, func() error {
		var list struct{ Alarms []alarmView }
		if err := s.api.fetch("api/alarms", &list); err != nil {
			return err
		}
		n := 0
		for _, a := range list.Alarms {
			if a.Device == mineCam || a.Device == otherCam {
				n++
			}
		}
		if n < 2 {
			return fmt.Errorf("%d of the two alarms raised", n)
		}
		return nil
	})
	if err := chromedp.Do(ctx,
		chromedp.Evaluate[chromedp.Void](`window.citywatch.alarms.show()`),
		chromedp.WaitVisible(`#alarm-list tr[data-alarm]`),
	); err != nil {
		t.Fatalf("alarm desk: %v", err)
	}
	desk, err := chromedp.Run(ctx, chromedp.Text(`#alarms`))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(desk, mineCam) || strings.Contains(desk, otherCam) {
		t.Errorf("the alarm desk shows %q: want %s and not %s", desk, mineCam, otherCam)
	}
	feed, err := chromedp.Run(ctx, chromedp.Text(`#feed`))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(feed, mineCam) || strings.Contains(feed, otherCam) {
		t.Errorf("the feed shows %q: want %s and not %s", feed, mineCam, otherCam)
	}
	// The wall plays the district's camera; the other district's camera
	// does not exist for this operator, and the hub records the attempt.
	playing := districts[mine][1]
	if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](fmt.Sprintf(
		`window.citywatch.wall.setLayout(4); window.citywatch.wall.assign(0, %q); window.citywatch.wall.assign(1, %q);`,
		playing, districts[other][1])),
	); err != nil {
		t.Fatal(err)
	}
	decodingGrows(t, ctx, "wall", []string{playing})
	eventually(t, 30*time.Second, func() error {
		page, err := s.hub.Audit().Query(context.Background(), audit.Filter{Action: "live.start", Actor: "north-op"})
		if err != nil {
			return err
		}
		outcomes := map[string]audit.Outcome{}
		for _, r := range page.Records {
			outcomes[r.Object] = r.Outcome
		}
		if outcomes["camera/"+playing] != audit.Success || outcomes["camera/"+districts[other][1]] != audit.Denied {
			return fmt.Errorf("live.start records %v", outcomes)
		}
		return nil
	})
	for _, st := range videoStats(t, ctx) {
		if st.Camera == districts[other][1] && st.FramesDecoded > 0 {
			t.Errorf("the wall decodes %s of another district", st.Camera)
		}
	}

	// Sign out: the page is back to the sign-in form and the API refuses
	// the browser.
	if err := chromedp.Do(ctx,
		chromedp.Click(`#account-menu`),
		chromedp.WaitVisible(`#logout`),
		chromedp.Click(`#logout`),
		chromedp.WaitVisible(`body[data-view="login"] #login-user`),
	); err != nil {
		t.Fatalf("sign out: %v", err)
	}
	status, err := chromedp.Run(ctx, chromedp.Evaluate[int](`fetch('/api/summary').then(r => r.status)`, chromedp.EvalAwaitPromise))
	if err != nil || status != http.StatusUnauthorized {
		t.Errorf("after signing out /api/summary = %d (%v), want 401", status, err)
	}
	// Sign in again: the password, then a code (the next step's: the one
	// used to enrol cannot be used twice).
	if err := chromedp.Do(ctx,
		chromedp.SendKeys(`#login-user`, "north-op"),
		chromedp.SendKeys(`#login-pass`, testPassword),
		chromedp.Click(`#login-submit`),
		chromedp.WaitVisible(`#login-totp`),
		chromedp.SendKeys(`#login-totp`, totpCode(t, secret, enrolled.Add(30*time.Second))),
		chromedp.Click(`#login-submit`),
		chromedp.WaitVisible(`body[data-view="console"] #live[data-state="live"]`),
	); err != nil {
		t.Fatalf("sign in with a code: %v", err)
	}
	page, err := s.hub.Audit().Query(context.Background(), audit.Filter{Action: "auth.", Actor: "north-op"})
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, r := range page.Records {
		actions = append(actions, r.Action)
	}
	for _, want := range []string{"auth.login", "auth.totp_enroll", "auth.logout"} {
		if !slices.Contains(actions, want) {
			t.Errorf("the trail lacks %s for north-op: %v", want, actions)
		}
	}
}

// TestForeignOriginPageInChromium opens, in a browser signed in to the
// hub, a page of another origin that tries to open the event stream and
// acknowledge an alarm with the browser's cookie: both are refused, and
// the refusal is in the trail.
func TestForeignOriginPageInChromium(t *testing.T) {
	s := startStack(t, stackOptions{city: smallCity, hubCfg: quickAlarms(t)})
	s.waitAllOnline(t)
	_, cam := firstCamera(t, s)
	if err := s.sim.Fault(sim.Fault{Device: cam, Fault: sim.FaultOffline}); err != nil {
		t.Fatal(err)
	}
	var id string
	eventually(t, 60*time.Second, func() error {
		var list struct{ Alarms []alarmView }
		if err := s.api.fetch("api/alarms?device="+cam, &list); err != nil {
			return err
		}
		if len(list.Alarms) == 0 {
			return fmt.Errorf("no alarm for %s yet", cam)
		}
		id = list.Alarms[0].ID
		return nil
	})
	browserAccount(t, s.hub, "duty-op", auth.Operator, auth.Everything)
	ctx := consoleAs(t, s.hub, "duty-op", 2*time.Minute)

	// Another origin: the same host, another port — same site, so a
	// SameSite cookie alone would not stop it.
	hub := strings.TrimSuffix(s.hub.ConsoleURL(), "/")
	page := fmt.Sprintf(`<!doctype html><script>
window.result = {ws: 'pending', post: 'pending'};
const ws = new WebSocket(%q.replace('http', 'ws') + '/api/events');
ws.onopen = () => { window.result.ws = 'open'; };
ws.onerror = () => { window.result.ws = 'refused'; };
fetch(%q + '/api/alarms/%s/ack', {method: 'POST', credentials: 'include', mode: 'no-cors',
  headers: {'Content-Type': 'text/plain'}, body: '{"note":"from evil"}'})
  .then(() => { window.result.post = 'sent'; }, () => { window.result.post = 'failed'; });
</script>`, hub, hub, id)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprint(w, page)
	}), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	if err := chromedp.Do(ctx, chromedp.Navigate("http://"+ln.Addr().String()+"/")); err != nil {
		t.Fatal(err)
	}
	var result struct{ WS, Post string }
	eventually(t, 30*time.Second, func() error {
		r, err := chromedp.Run(ctx, chromedp.Evaluate[map[string]string](`window.result`))
		if err != nil {
			return err
		}
		result.WS, result.Post = r["ws"], r["post"]
		if result.WS == "pending" || result.Post == "pending" {
			return fmt.Errorf("page still trying: %+v", result)
		}
		return nil
	})
	if result.WS == "open" {
		t.Error("a page of another origin opened the event stream with the operator's cookie")
	}
	var a struct{ Alarm alarmView }
	s.api.getJSON(t, "api/alarms/"+id, &a)
	if a.Alarm.State != "active_unack" {
		t.Errorf("a page of another origin acknowledged the alarm: %s", a.Alarm.State)
	}
	rec, err := s.hub.Audit().Query(context.Background(), audit.Filter{Action: "access.denied", Actor: "duty-op"})
	if err != nil {
		t.Fatal(err)
	}
	reasons := map[string]bool{}
	for _, r := range rec.Records {
		reasons[strings.SplitN(r.Detail, ":", 2)[0]] = true
	}
	if !reasons["origin"] {
		t.Errorf("the refusals are not in the trail as origin: %+v", rec.Records)
	}
}

// hostile is markup and script that must show as text wherever the
// console shows names and details.
const hostile = `<img src=x onerror="window.__xss=(window.__xss||0)+1"><script>window.__xss=1</script>"'><svg onload=window.__xss=1>`

// TestHostileInventoryRendersInert lets an agent report a site, devices
// and details whose names are markup and script, and checks in Chromium
// that the table, the device panel, the alarm desk, the feed and the video
// wall show them as text and run nothing.
func TestHostileInventoryRendersInert(t *testing.T) {
	s := startStack(t, stackOptions{city: smallCity, hubCfg: quickAlarms(t)})
	s.waitAllOnline(t)
	const agent, camID = "hostile-1", "hostile-cam"
	pub := mustConnectMQTT(t, s.broker.URL(), agent, "", "", nil)
	seq := uint64(0)
	header := func() wire.Header {
		seq++
		return wire.Header{V: wire.Version, Agent: agent, Boot: time.Now().UnixMilli(), Seq: seq, TS: time.Now()}
	}
	boot := time.Now().UnixMilli()
	send := func(ch wire.Channel, v any, retained bool) {
		t.Helper()
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if tok := pub.Publish(wire.Topic(agent, ch), 1, retained, b); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish %s: %v", ch, tok.Error())
		}
	}
	h := header()
	h.Boot = boot
	send(wire.ChannelState, &wire.State{Header: h, State: wire.AgentOnline, Conn: 1, Interval: 10, Version: hostile[:60]}, true)
	h = header()
	h.Boot = boot
	send(wire.ChannelInventory, &wire.Inventory{Header: h,
		Site: wire.Site{ID: "hostile-site", Name: "Site " + hostile, District: "Dist " + hostile[:40], Location: wire.Location{Lat: 30.5, Lon: 114.3}},
		Devices: []wire.Device{{ID: camID, Name: "Cam " + hostile, Kind: wire.KindCamera, District: "Dist " + hostile[:40],
			Location: wire.Location{Lat: 30.5, Lon: 114.3}, Criticality: 3, Camera: &wire.CameraInfo{Heading: 90, FOV: 60, Range: 50}}},
	}, true)
	report := func(st wire.Status) {
		h := header()
		h.Boot = boot
		send(wire.ChannelHealth, &wire.Health{Header: h, Interval: 10, Devices: []wire.DeviceHealth{{
			ID: camID, Status: st, Reason: wire.ReasonRefused, Detail: "Detail " + hostile, Since: time.Now().Add(-time.Minute),
		}}}, false)
	}
	report(wire.StatusOffline)
	eventually(t, 30*time.Second, func() error {
		d, ok := s.hub.Fleet().Device(camID)
		if !ok || d.Status != wire.StatusOffline {
			return fmt.Errorf("the hostile camera is %+v", d)
		}
		return nil
	})
	eventually(t, 60*time.Second, func() error {
		var list struct{ Alarms []alarmView }
		if err := s.api.fetch("api/alarms?device="+camID, &list); err != nil {
			return err
		}
		if len(list.Alarms) == 0 {
			return fmt.Errorf("no alarm yet")
		}
		return nil
	})

	browserAccount(t, s.hub, "watcher", auth.Operator, auth.Everything)
	ctx := consoleAs(t, s.hub, "watcher", 2*time.Minute)
	row := fmt.Sprintf(`#devices tr[data-device=%q]`, camID)
	if err := chromedp.Do(ctx,
		chromedp.SendKeys(`#q`, camID),
		chromedp.WaitVisible(row),
		chromedp.Click(row),
		chromedp.WaitVisible(`#detail`),
		chromedp.Evaluate[chromedp.Void](`window.citywatch.alarms.show()`),
		chromedp.WaitVisible(`#alarm-list tr[data-alarm]`),
	); err != nil {
		t.Fatalf("views: %v", err)
	}
	if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](fmt.Sprintf(
		`window.citywatch.wall.setLayout(4); window.citywatch.wall.assign(0, %q);`, camID))); err != nil {
		t.Fatal(err)
	}
	// A change while the console watches puts the camera in the live feed.
	report(wire.StatusDegraded)
	// Every view has drawn the hostile device: its id is on screen in each.
	eventually(t, 60*time.Second, func() error {
		for _, where := range []string{"#devices", "#detail", "#alarms", "#feed", "#wall"} {
			text, err := chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf(`document.querySelector(%q)?.textContent || ''`, where)))
			if err != nil {
				return err
			}
			if !strings.Contains(text, camID) && !strings.Contains(text, "Cam <img") {
				return fmt.Errorf("%s does not show the hostile camera yet", where)
			}
		}
		return nil
	})
	ran, err := chromedp.Run(ctx, chromedp.Evaluate[any](`window.__xss`))
	if err != nil {
		t.Fatal(err)
	}
	if ran != nil {
		t.Fatalf("hostile markup ran in the console: window.__xss = %v", ran)
	}
	shown := false
	for _, where := range []string{"#devices", "#detail", "#alarms", "#feed", "#wall"} {
		text, err := chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf(`document.querySelector(%q)?.textContent || ''`, where)))
		if err != nil {
			t.Fatal(err)
		}
		shown = shown || strings.Contains(text, `onerror="window.__xss`)
		nodes, err := chromedp.Run(ctx, chromedp.Evaluate[int](fmt.Sprintf(
			`document.querySelectorAll(%q + ' img[onerror], ' + %q + ' svg[onload], ' + %q + ' script').length`, where, where, where)))
		if err != nil {
			t.Fatal(err)
		}
		if nodes > 0 {
			t.Errorf("%s holds %d elements made from the hostile names", where, nodes)
		}
	}
	if !shown {
		t.Error("no view shows the hostile name as text")
	}
}
