package live

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtcp"

	"github.com/citywatch/citywatch/hub/audit"
	"github.com/citywatch/citywatch/hub/auth"
	"github.com/citywatch/citywatch/hub/metrics"
	"github.com/citywatch/citywatch/wire"
)

// A WHEP player gets H.264 whose first picture is a keyframe with its
// parameter sets, and frames keep coming.
func TestViewerStartsWithKeyframe(t *testing.T) {
	for _, withAudio := range []bool{false, true} {
		name := "video offer"
		if withAudio {
			name = "audio and video offer"
		}
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, testConfig())
			c, offer := newWHEPClient(t, withAudio)
			res, body := e.post("cam-1", offer, nil)
			if res.StatusCode != http.StatusCreated || res.Header.Get("Content-Type") != "application/sdp" ||
				!strings.HasPrefix(res.Header.Get("Location"), "/api/cameras/cam-1/whep/ws-") {
				t.Fatalf("POST = %d %v\n%s", res.StatusCode, res.Header, body)
			}
			c.accept(res, body)
			if got := c.firstAccessUnit(); !slices.Contains(got, byte(7)) || !slices.Contains(got, byte(8)) || !slices.Contains(got, byte(5)) {
				t.Fatalf("first picture's NAL types %v, want SPS, PPS and IDR", got)
			}
			n := c.count()
			c.awaitPackets(n + 30) // well past the first keyframe interval's worth
			e.leave(c)
			if got := e.agent.count(wire.CommandLiveStart); got != 1 {
				t.Errorf("%d live_start, want 1", got)
			}
		})
	}
}

// However many watch, the agent sends one stream; it stops once the last
// viewer has gone and the linger has passed, and nothing is left behind.
func TestOneUpstreamForManyViewers(t *testing.T) {
	base := measure()
	e := newEnv(t, testConfig())

	var mu sync.Mutex
	var clients []*whepClient
	join := func(n int) {
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				c := e.watch("cam-1")
				mu.Lock()
				clients = append(clients, c)
				mu.Unlock()
			})
		}
		wg.Wait()
	}
	join(2) // concurrently, on a cold camera
	join(10)
	for _, c := range clients {
		if got := c.firstAccessUnit(); !slices.Contains(got, byte(5)) || !slices.Contains(got, byte(7)) {
			t.Fatalf("a viewer's first picture is %v", got)
		}
	}
	if got := e.agent.count(wire.CommandLiveStart); got != 1 {
		t.Fatalf("%d live_start for 12 viewers of one camera, want 1", got)
	}
	if s := e.streams(); len(s) != 1 || s[0].Viewers != 12 || s[0].State != "running" || s[0].Camera != "cam-1" || s[0].Agent != agentID {
		t.Fatalf("streams = %+v", s)
	}
	if got := e.metric("citywatch_live_viewers"); got != 12 {
		t.Errorf("citywatch_live_viewers = %v", got)
	}
	if got := e.metric(`citywatch_live_ttff_seconds{start="cold",le="+Inf"}`) + e.metric(`citywatch_live_ttff_seconds{start="warm",le="+Inf"}`); got != 12 {
		t.Errorf("TTFF observations = %v, want 12", got)
	}

	for _, c := range clients {
		e.leave(c)
	}
	eventually(t, "live_stop after the linger", func() bool { return e.agent.count(wire.CommandLiveStop) == 1 })
	if s := e.streams(); len(s) != 0 {
		t.Fatalf("streams after stop = %+v", s)
	}
	if got := e.agent.count(wire.CommandLiveStart); got != 1 {
		t.Fatalf("%d live_start", got)
	}
	// The last point is written once the stream has finished stopping,
	// after live_stop went out.
	eventually(t, "the stream's last stats point", func() bool {
		st, ok := e.stats.last("cam-1")
		return ok && st.State == "stopped" && st.Reason == "stopped"
	})
	e.stop()
	backTo(t, base)
}

// Within the linger a new viewer reuses the stream, warm, without another
// live_start.
func TestLingerKeepsTheStream(t *testing.T) {
	cfg := testConfig()
	cfg.Linger = time.Hour // longer than the test
	e := newEnv(t, cfg)
	e.leave(e.watch("cam-1"))
	eventually(t, "the stream lingering", func() bool {
		s := e.streams()
		return len(s) == 1 && s[0].State == "lingering" && s[0].Viewers == 0
	})
	c := e.watch("cam-1")
	if got := c.firstAccessUnit(); !slices.Contains(got, byte(5)) {
		t.Fatalf("first picture after the linger %v", got)
	}
	if got := e.agent.count(wire.CommandLiveStart); got != 1 || e.agent.count(wire.CommandLiveStop) != 0 {
		t.Fatalf("commands %v", e.agent.log())
	}
	if got := e.metric(`citywatch_live_ttff_seconds{start="warm",le="+Inf"}`); got != 1 {
		t.Errorf("warm TTFF observations = %v, want 1", got)
	}
}

// A camera that fails while watched ends its viewers' sessions cleanly,
// shows degraded with the agent's reason, and leaks nothing; the next
// stream that works clears the fault.
func TestCameraFailsWhileWatched(t *testing.T) {
	e := newEnv(t, testConfig())
	base := measure()
	a, b := e.watch("cam-1"), e.watch("cam-1")
	a.awaitPackets(10)
	b.awaitPackets(10)

	e.agent.fail("cam-1", wire.ReasonRefused, "camera closed the RTSP connection")
	for _, c := range []*whepClient{a, b} {
		eventually(t, "the viewer's connection closed", c.isClosed)
		c.close()
	}
	eventually(t, "the camera degraded", func() bool {
		d, _ := e.fleet.Device("cam-1")
		return d.Status == wire.StatusDegraded
	})
	d, _ := e.fleet.Device("cam-1")
	if d.Reason != wire.ReasonRefused || !strings.Contains(d.Detail, "camera closed the RTSP connection") {
		t.Fatalf("camera after the failure: %s %s %q", d.Status, d.Reason, d.Detail)
	}
	if s := e.streams(); len(s) != 0 {
		t.Fatalf("streams = %+v", s)
	}
	if got := e.metric(`citywatch_live_upstream_failures_total{reason="refused"}`); got != 1 {
		t.Errorf("failures{refused} = %v", got)
	}
	if got := e.agent.count(wire.CommandLiveStop); got != 0 {
		t.Errorf("%d live_stop for a stream the agent ended", got)
	}
	ends := e.audit.find("live.end")
	if len(ends) != 2 || ends[0].Object != "camera/cam-1" || !strings.Contains(ends[0].Detail, "gives no picture: refused") {
		t.Fatalf("audited ends = %+v", ends)
	}
	e.agent.close() // the failed camera's goroutines
	backTo(t, base)

	c := e.watch("cam-1")
	c.awaitPackets(5)
	if d, _ := e.fleet.Device("cam-1"); d.Status != wire.StatusOnline {
		t.Fatalf("camera after a working stream: %s %s", d.Status, d.Reason)
	}
}

// A watched stream that stops bringing packets while its connection is up
// is a camera with no picture.
func TestStalledStreamEnds(t *testing.T) {
	cfg := testConfig()
	cfg.StallTimeout = 300 * time.Millisecond
	e := newEnv(t, cfg)
	c := e.watch("cam-2")
	c.awaitPackets(5)
	e.agent.camera("cam-2").paused.Store(true)
	eventually(t, "the viewer's connection closed", c.isClosed)
	// The camera is marked once the stream has finished ending, which
	// closes its viewers first.
	eventually(t, "the camera degraded", func() bool {
		d, _ := e.fleet.Device("cam-2")
		return d.Status == wire.StatusDegraded && d.Reason == wire.ReasonNoStream
	})
	eventually(t, "live_stop", func() bool { return e.agent.count(wire.CommandLiveStop) == 1 })
}

// An agent that never answers costs the viewer a clear 504, not a hang,
// and says nothing about the camera.
func TestAgentDoesNotAnswer(t *testing.T) {
	cfg := testConfig()
	cfg.UpstreamTimeout = 300 * time.Millisecond
	e := newEnv(t, cfg)
	e.agent.silent.Store(true)
	_, offer := newWHEPClient(t, false)
	res, body := e.post("cam-3", offer, nil)
	if res.StatusCode != http.StatusGatewayTimeout || !strings.Contains(body, "no answer from agent a1 (within 300ms)") {
		t.Fatalf("POST = %d %s", res.StatusCode, body)
	}
	if d, _ := e.fleet.Device("cam-3"); d.Status != wire.StatusOnline {
		t.Fatalf("camera marked %s by a silent agent", d.Status)
	}
	if got := e.metric(`citywatch_live_upstream_failures_total{reason="no_answer"}`); got != 1 {
		t.Errorf("failures{no_answer} = %v", got)
	}
	if l := e.agent.log(); len(l) != 2 || !strings.HasPrefix(l[1], wire.CommandLiveStop) {
		t.Errorf("commands %v, want live_start then live_stop", l)
	}
}

// The agent refuses a stream for its own limit, or for a camera whose
// video the live path does not carry (H.265 only): a message saying so,
// and neither is the camera's fault, so its status stays.
func TestAgentRefuses(t *testing.T) {
	tests := []struct {
		reason wire.Reason
		detail string
		code   int
		says   string
	}{
		{wire.ReasonLiveLimit, "", http.StatusServiceUnavailable, "its own stream limit"},
		{wire.ReasonLiveCodec, "the camera sends H265, not H.264", http.StatusUnsupportedMediaType,
			"camera cam-4 sends video the live path does not carry (the camera sends H265, not H.264): give it an H.264 sub-stream"},
	}
	for _, tt := range tests {
		t.Run(string(tt.reason), func(t *testing.T) {
			e := newEnv(t, testConfig())
			e.agent.silent.Store(true)
			_, offer := newWHEPClient(t, false)
			done := make(chan struct{})
			var res *http.Response
			var body string
			go func() {
				defer close(done)
				res, body = e.post("cam-4", offer, nil)
			}()
			var session string
			eventually(t, "live_start", func() bool {
				e.agent.mu.Lock()
				defer e.agent.mu.Unlock()
				if len(e.agent.commands) > 0 {
					session = e.agent.commands[0].Session
				}
				return session != ""
			})
			e.sfu.HandleLive(wire.Live{Header: wire.Header{Agent: "someone-else"}, Session: session, Device: "cam-4", Type: wire.LiveStopped, Reason: wire.ReasonRefused})
			e.sfu.HandleLive(wire.Live{Header: wire.Header{Agent: agentID}, Session: session, Device: "cam-4", Type: wire.LiveStopped, Reason: tt.reason, Detail: tt.detail})
			<-done
			if res.StatusCode != tt.code || !strings.Contains(body, tt.says) {
				t.Fatalf("POST = %d %s, want %d %s", res.StatusCode, body, tt.code, tt.says)
			}
			if d, _ := e.fleet.Device("cam-4"); d.Status != wire.StatusOnline {
				t.Fatalf("camera marked %s for %s", d.Status, tt.reason)
			}
			if got := e.metric(`citywatch_live_upstream_failures_total{reason="` + string(tt.reason) + `"}`); got != 1 {
				t.Errorf("failures{%s} = %v", tt.reason, got)
			}
		})
	}
}

// The hub's own per-agent limit protects the uplink; a stream nobody
// watches gives way, and its live_stop goes out before the new live_start.
func TestPerAgentLimit(t *testing.T) {
	cfg := testConfig()
	cfg.MaxUpstreamsPerAgent = 2
	cfg.Linger = time.Hour
	e := newEnv(t, cfg)
	one := e.watch("cam-1")
	e.watch("cam-2")
	_, offer := newWHEPClient(t, false)
	res, body := e.post("cam-3", offer, nil)
	if res.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "site uplink limit: 2 streams from agent a1 already") {
		t.Fatalf("POST over the limit = %d %s", res.StatusCode, body)
	}
	if got := e.agent.count(wire.CommandLiveStart); got != 2 {
		t.Fatalf("%d live_start", got)
	}

	e.leave(one) // cam-1 lingers
	e.watch("cam-3").awaitPackets(5)
	l := e.agent.log()
	if len(l) != 4 || l[2] != wire.CommandLiveStop+" "+sessionOf(e, "cam-1") || !strings.HasPrefix(l[3], wire.CommandLiveStart+" cam-3") {
		t.Fatalf("commands %v: want cam-1's live_stop, then cam-3's live_start", l)
	}
}

func sessionOf(e *env, camera string) string {
	e.agent.mu.Lock()
	defer e.agent.mu.Unlock()
	for _, c := range e.agent.commands {
		if c.Type == wire.CommandLiveStart && c.Devices[0] == camera {
			return c.Session
		}
	}
	return ""
}

// Bad requests get precise 4xx answers and disturb nothing: a viewer
// watching meanwhile keeps receiving, and the agent hears nothing more.
func TestBadRequests(t *testing.T) {
	e := newEnv(t, testConfig())
	watcher := e.watch("cam-1")
	other := e.watch("cam-2")
	_, goodOffer := newWHEPClient(t, false)
	vp8Offer := strings.NewReplacer("H264/90000", "VP8/90000").Replace(goodOffer)
	big := goodOffer + strings.Repeat("a=x-padding:"+strings.Repeat("x", 100)+"\r\n", 700)
	as := func(who string) http.Header { return http.Header{"Authorization": {"Bearer " + who}} }

	for _, tc := range []struct {
		name                string
		method, path, ctype string
		body                string
		hdr                 http.Header
		code                int
		want                string
	}{
		{"malformed SDP", "POST", "/api/cameras/cam-1/whep", "application/sdp", "hello", nil, 400, "malformed SDP"},
		{"empty offer", "POST", "/api/cameras/cam-1/whep", "application/sdp", "", nil, 400, "malformed SDP"},
		{"no H.264 or H.265", "POST", "/api/cameras/cam-1/whep", "application/sdp", vp8Offer, nil, 400, "offer has no H.264 or H.265 video"},
		{"unknown camera", "POST", "/api/cameras/cam-404/whep", "application/sdp", goodOffer, nil, 404, `no camera \"cam-404\"`},
		{"a sensor", "POST", "/api/cameras/" + sensorID + "/whep", "application/sdp", goodOffer, nil, 400, "is a sensor, not a camera"},
		{"agent offline", "POST", "/api/cameras/" + offlineCam + "/whep", "application/sdp", goodOffer, nil, 503, "agent a2 of camera cam-off is offline"},
		{"wrong content type", "POST", "/api/cameras/cam-1/whep", "application/json", goodOffer, nil, 415, "application/sdp"},
		{"no content type", "POST", "/api/cameras/cam-1/whep", "", goodOffer, nil, 415, "application/sdp"},
		{"too large", "POST", "/api/cameras/cam-1/whep", "application/sdp", big, nil, 413, "larger than 64 KiB"},
		{"GET the endpoint", "GET", "/api/cameras/cam-1/whep", "", "", nil, 405, "use POST, OPTIONS"},
		{"DELETE unknown session", "DELETE", "/api/cameras/cam-1/whep/ws-nope", "", "", nil, 404, "no session"},
		{"DELETE another camera's session", "DELETE", strings.Replace(other.location, "cam-2", "cam-1", 1), "", "", nil, 404, "no session"},
		{"DELETE someone else's session", "DELETE", watcher.location, "", "", as("alice"), 404, "no session"},
		{"anonymous", "POST", "/api/cameras/cam-1/whep", "application/sdp", goodOffer, http.Header{"Authorization": {""}}, 401, "authentication required"},
		{"a maintainer may not watch", "POST", "/api/cameras/cam-1/whep", "application/sdp", goodOffer, as("maint"), 403, "live.view"},
		{"a camera out of scope", "POST", "/api/cameras/cam-1/whep", "application/sdp", goodOffer, as("north"), 404, `no camera \"cam-1\"`},
		{"a link for another camera", "POST", "/api/cameras/cam-1/whep", "application/sdp", goodOffer, as("link-cam-2"), 404, `no camera \"cam-1\"`},
		{"a link may not list sessions", "GET", "/api/live/sessions", "", "", as("link-cam-1"), 403, "live.monitor"},
		{"an operator may not list sessions", "GET", "/api/live/sessions", "", "", as("alice"), 403, "live.monitor"},
		{"PATCH: no trickle ICE", "PATCH", watcher.location, "application/trickle-ice-sdpfrag", "a=candidate:1", nil, 405, "use DELETE, OPTIONS"},
		{"sessions with a bad parameter", "GET", "/api/live/sessions?cam=cam-1", "", "", nil, 400, "unknown parameter"},
		{"streams by POST", "POST", "/api/live/streams", "", "", nil, 405, "use GET"},
		{"unknown path", "GET", "/api/live/nothing", "", "", nil, 404, "no such endpoint"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, body := e.request(tc.method, tc.path, tc.ctype, tc.body, tc.hdr)
			if res.StatusCode != tc.code || !strings.Contains(body, tc.want) || res.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("%s %s = %d %s (%s), want %d …%s…", tc.method, tc.path, res.StatusCode, body, res.Header.Get("Content-Type"), tc.code, tc.want)
			}
		})
	}

	n := watcher.count()
	watcher.awaitPackets(n + 10)
	if watcher.isClosed() || other.isClosed() {
		t.Fatal("a bad request closed a good session")
	}
	if l := e.agent.log(); len(l) != 2 {
		t.Fatalf("the agent heard %v", l)
	}
	if got := e.metric("citywatch_live_viewers"); got != 2 {
		t.Fatalf("viewers = %v", got)
	}
}

// OPTIONS tells WHEP players what the endpoint takes, and CORS lets the
// configured origins' pages use it and read the Location.
func TestOptionsAndCORS(t *testing.T) {
	cfg := testConfig()
	cfg.AllowOrigins = []string{"https://player.example.org"}
	e := newEnv(t, cfg)
	preflight := http.Header{"Origin": {"https://player.example.org"}, "Access-Control-Request-Method": {"POST"}}
	res, _ := e.request(http.MethodOptions, "/api/cameras/cam-1/whep", "", "", preflight)
	h := res.Header
	if res.StatusCode != http.StatusNoContent || h.Get("Accept-Post") != "application/sdp" ||
		h.Get("Access-Control-Allow-Origin") != "https://player.example.org" || !strings.Contains(h.Get("Access-Control-Allow-Methods"), "POST") ||
		!strings.Contains(h.Get("Access-Control-Allow-Headers"), "Content-Type") {
		t.Fatalf("preflight = %d %v", res.StatusCode, h)
	}
	c, offer := newWHEPClient(t, false)
	res, body := e.post("cam-1", offer, http.Header{"Origin": {"https://player.example.org"}})
	if res.StatusCode != http.StatusCreated || !strings.Contains(res.Header.Get("Access-Control-Expose-Headers"), "Location") {
		t.Fatalf("POST = %d %v", res.StatusCode, res.Header)
	}
	c.accept(res, body)
	res, _ = e.request(http.MethodOptions, "/api/cameras/cam-1/whep", "", "", http.Header{"Origin": {"https://evil.example"}})
	if res.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("another origin allowed: %v", res.Header)
	}
}

// Every session's start and end go to the audit trail with who watched
// what, from where, for how long and how much; the sessions in progress
// are listed for supervisors, and the streams list shows what runs now.
func TestSessionsAndAudit(t *testing.T) {
	e := newEnv(t, testConfig())
	alice := http.Header{"Authorization": {"Bearer alice"}, "User-Agent": {"test-player/1.0"}}
	c, offer := newWHEPClient(t, false)
	res, body := e.post("cam-5", offer, alice)
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("POST = %d %s", res.StatusCode, body)
	}
	c.accept(res, body)
	c.awaitPackets(20)
	later := e.watch("cam-6")
	later.awaitPackets(1)
	var l SessionList
	e.getJSON("/api/live/sessions", &l)
	if len(l.Sessions) != 2 || l.Sessions[0].Camera != "cam-6" || l.Sessions[1].Camera != "cam-5" {
		t.Fatalf("sessions not newest first: %+v", l)
	}
	s := l.Sessions[1]
	if s.Who != "alice" || s.Via != auth.ViaToken || s.Agent != agentID || s.Remote != "127.0.0.1" || s.UserAgent != "test-player/1.0" ||
		s.Start.IsZero() || s.Packets == 0 || s.Bytes == 0 || s.TTFF <= 0 {
		t.Fatalf("session while watching = %+v", s)
	}
	res, body = e.request(http.MethodDelete, c.location, "", "", alice)
	if res.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE by the same viewer = %d %s", res.StatusCode, body)
	}
	e.getJSON("/api/live/sessions?camera=cam-5", &l)
	if len(l.Sessions) != 0 {
		t.Fatalf("sessions after DELETE = %+v", l)
	}
	starts := e.audit.find("live.start")
	if len(starts) != 2 || starts[0].Actor != "alice" || starts[0].Role != "operator" || starts[0].Object != "camera/cam-5" ||
		starts[0].Outcome != audit.Success || starts[0].Remote != "127.0.0.1" || !strings.Contains(starts[0].Detail, s.ID) {
		t.Fatalf("audited starts = %+v", starts)
	}
	ends := e.audit.find("live.end")
	if len(ends) != 1 || ends[0].Actor != "alice" || !strings.Contains(ends[0].Detail, "ended by the viewer") ||
		strings.Contains(ends[0].Detail, " 0 bytes") {
		t.Fatalf("audited end = %+v", ends)
	}
	var l2 StreamList
	e.getJSON("/api/live/streams?camera=cam-6", &l2)
	if s := l2.Streams; len(s) != 1 || s[0].Camera != "cam-6" || s[0].Viewers != 1 || s[0].State != "running" {
		t.Fatalf("streams = %+v", s)
	}
	eventually(t, "a rate", func() bool {
		e.getJSON("/api/live/streams?camera=cam-6", &l2)
		return len(l2.Streams) == 1 && l2.Streams[0].FPS > 0 && l2.Streams[0].BitrateKbps > 0
	})
}

// One account holds at most MaxSessionsPerAccount sessions; a refusal is
// audited, others are not held back, and a session's end frees its slot.
// Ending a login session ends the video watched with it.
func TestSessionLimitAndLogout(t *testing.T) {
	cfg := testConfig()
	cfg.MaxSessionsPerAccount = 1
	e := newEnv(t, cfg)
	alice := http.Header{"Authorization": {"Bearer alice"}}
	c, offer := newWHEPClient(t, false)
	res, body := e.post("cam-1", offer, alice)
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("first = %d %s", res.StatusCode, body)
	}
	c.accept(res, body)
	c.awaitPackets(5)
	_, offer2 := newWHEPClient(t, false)
	if res, body := e.post("cam-2", offer2, alice); res.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("second for alice = %d %s, want 429", res.StatusCode, body)
	}
	if d := e.audit.find("live.start"); len(d) != 2 || d[1].Outcome != audit.Denied {
		t.Fatalf("audited starts = %+v", d)
	}
	other := e.watch("cam-2") // the supervisor is not held back
	other.awaitPackets(1)

	e.sfu.EndSessions([]string{"s-alice"})
	eventually(t, "alice's viewer closed", c.isClosed)
	if ends := e.audit.find("live.end"); len(ends) != 1 || !strings.Contains(ends[0].Detail, "login session ended") {
		t.Fatalf("audited ends = %+v", ends)
	}
	if other.isClosed() {
		t.Fatal("another account's session was ended")
	}
	c.close()
	c2, offer3 := newWHEPClient(t, false)
	res, body = e.post("cam-1", offer3, alice)
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("after the end, alice = %d %s", res.StatusCode, body)
	}
	c2.accept(res, body)
	c2.awaitPackets(1)
}

// A viewing link plays its camera through ?token=, as players that cannot
// send headers do.
func TestViewingLinkInQuery(t *testing.T) {
	e := newEnv(t, testConfig())
	c, offer := newWHEPClient(t, false)
	res, body := e.request(http.MethodPost, "/api/cameras/cam-3/whep?token=link-cam-3", "application/sdp", offer, http.Header{"Authorization": nil})
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("POST with a link = %d %s", res.StatusCode, body)
	}
	c.accept(res, body)
	c.awaitPackets(5)
	if d := e.audit.find("live.start"); len(d) != 1 || d[0].Actor != "alice" || !strings.Contains(d[0].Detail, "via link") {
		t.Fatalf("audited = %+v", d)
	}
	// The same link for another camera is refused, and that is recorded.
	if res, _ := e.request(http.MethodPost, "/api/cameras/cam-4/whep?token=link-cam-3", "application/sdp", offer, http.Header{"Authorization": nil}); res.StatusCode != http.StatusNotFound {
		t.Fatalf("the link on another camera = %d", res.StatusCode)
	}
	if d := e.audit.find("live.start"); len(d) != 2 || d[1].Outcome != audit.Denied || d[1].Object != "camera/cam-4" {
		t.Fatalf("audited = %+v", d)
	}
	// Its Location carries the link, so the player can end the session.
	if !strings.HasSuffix(c.location, "?token=link-cam-3") {
		t.Fatalf("Location %q does not carry the link", c.location)
	}
	res, body = e.request(http.MethodDelete, c.location, "", "", http.Header{"Authorization": nil})
	if res.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE with the link = %d %s", res.StatusCode, body)
	}
}

// Keyframe requests from viewers reach the agent, but no more often than
// the keyframe interval allows.
func TestKeyframeRequests(t *testing.T) {
	for _, tc := range []struct {
		name     string
		interval time.Duration
		more     bool // viewers' requests get through
	}{
		{"throttled", time.Hour, false},
		{"allowed", time.Nanosecond, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.KeyframeInterval = tc.interval
			e := newEnv(t, cfg)
			c := e.watch("cam-1")
			c.awaitPackets(5)
			cam := e.agent.camera("cam-1")
			eventually(t, "the cold start's PLI", func() bool { return cam.plis.Load() >= 1 })
			ssrc := c.pc.GetTransceivers()[0].Receiver().Track().SSRC()
			for range 20 {
				if err := c.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(ssrc)}}); err != nil {
					t.Fatal(err)
				}
			}
			if tc.more {
				eventually(t, "a viewer's PLI upstream", func() bool { return cam.plis.Load() >= 2 })
				return
			}
			// The viewer's requests pass the relay's reader before a later
			// packet does; once packets after them arrived, the count is final.
			n := c.count()
			c.awaitPackets(n + 30)
			if got := cam.plis.Load(); got != 1 {
				t.Fatalf("camera got %d PLIs, want the cold start's only", got)
			}
			if got := e.metric("citywatch_live_keyframe_requests_total"); got != 1 {
				t.Fatalf("keyframe requests = %v", got)
			}
		})
	}
}

// Shutting down ends every session, tells the agents, and leaves nothing.
func TestShutdown(t *testing.T) {
	base := measure()
	e := newEnv(t, testConfig())
	c := e.watch("cam-1")
	c.awaitPackets(5)
	e.stop()
	eventually(t, "the viewer closed", c.isClosed)
	if l := e.agent.log(); len(l) != 2 || !strings.HasPrefix(l[1], wire.CommandLiveStop) {
		t.Fatalf("commands %v", l)
	}
	c.close()
	backTo(t, base)
}

func TestNewValidates(t *testing.T) {
	good := Deps{Metrics: metrics.NewRegistry(), Fleet: newFleet(t), Commands: newFakeAgent(t), Audit: &recordingAuditor{}}
	for _, tc := range []struct {
		name string
		cfg  Config
		deps Deps
		want string
	}{
		{"negative linger", Config{Linger: -1}, good, "negative"},
		{"bad port", Config{UDPPort: 70000}, good, "UDP port"},
		{"bad public IP", Config{PublicIPs: []string{"example.org"}}, good, "public IP"},
		{"bad origin", Config{AllowOrigins: []string{"example.org"}}, good, "allowed origin"},
		{"no fleet", Config{}, Deps{Metrics: metrics.NewRegistry(), Commands: good.Commands, Audit: good.Audit}, "Fleet"},
		{"no audit", Config{}, Deps{Metrics: metrics.NewRegistry(), Fleet: good.Fleet, Commands: good.Commands}, "Audit"},
		{"negative session cap", Config{MaxSessionsPerAccount: -1}, good, "sessions per account"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.cfg, tc.deps); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New = %v, want …%s…", err, tc.want)
			}
		})
	}
	s, err := New(Config{}, good)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Run(context.Background()); err == nil {
		t.Fatal("second Run succeeded")
	}
}

// With udp_port set every peer connection, upstream and viewers, shares
// one UDP socket.
func TestSharedUDPPort(t *testing.T) {
	l, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.LocalAddr().(*net.UDPAddr).Port
	l.Close()
	cfg := testConfig()
	cfg.UDPPort = port
	e := newEnv(t, cfg)
	c, offer := newWHEPClient(t, false)
	res, body := e.post("cam-1", offer, nil)
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("POST = %d %s", res.StatusCode, body)
	}
	if !strings.Contains(body, fmt.Sprintf("127.0.0.1 %d typ host", port)) {
		t.Fatalf("the answer's candidates are not on port %d:\n%s", port, body)
	}
	c.accept(res, body)
	c.awaitPackets(10)
	e.watch("cam-2").awaitPackets(10)
	if l, err := net.ListenPacket("udp4", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
		l.Close()
		t.Fatal("the relay does not hold its UDP port")
	}
}
