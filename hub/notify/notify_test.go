package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/citywatch/citywatch/hub/alarm"
	"github.com/citywatch/citywatch/hub/metrics"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func event(id string, kind alarm.EventKind, sev alarm.Severity, tier int) alarm.Event {
	act := map[alarm.EventKind]alarm.Action{
		alarm.EventRaise: alarm.ActRaise, alarm.EventEscalate: alarm.ActEscalate, alarm.EventClear: alarm.ActClear,
		alarm.EventUpdate: alarm.ActAck, alarm.EventFlap: alarm.ActFlap,
	}[kind]
	return alarm.Event{
		Kind: kind,
		Alarm: alarm.Alarm{ID: id, Key: "device_offline:device/" + id, Source: alarm.SourceDeviceOffline,
			Severity: sev, State: alarm.ActiveUnack, Escalations: tier, FirstAt: t0, LastAt: t0, Count: 1},
		Transition: alarm.Transition{At: t0, Who: alarm.System, Action: act, To: alarm.ActiveUnack},
	}
}

// received is Payload as a receiver decodes it (alarm.Severity marshals
// to its name and has no decoder).
type received struct {
	Version int             `json:"version"`
	Event   alarm.EventKind `json:"event"`
	Alarm   struct {
		ID       string `json:"id"`
		Severity string `json:"severity"`
	} `json:"alarm"`
	Transition alarm.Transition `json:"transition"`
	SentAt     time.Time        `json:"sent_at"`
}

// request is what the test server saw.
type request struct {
	header http.Header
	raw    string
	body   received
}

// receiver is a real HTTP server whose answers come from a function field.
type receiver struct {
	srv    *httptest.Server
	mu     sync.Mutex
	got    []request
	answer func(n int, w http.ResponseWriter, r *http.Request) // n: 1-based request number
}

func newReceiver(t *testing.T, answer func(n int, w http.ResponseWriter, r *http.Request)) *receiver {
	t.Helper()
	rc := &receiver{answer: answer}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var p received
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &p); err != nil {
			t.Errorf("receiver: bad JSON %q: %v", b, err)
		}
		rc.mu.Lock()
		rc.got = append(rc.got, request{header: r.Header.Clone(), raw: string(b), body: p})
		n := len(rc.got)
		rc.mu.Unlock()
		if rc.answer != nil {
			rc.answer(n, w, r)
		}
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) requests() []request {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]request(nil), rc.got...)
}

// fastHook backs off in microseconds, so retries go through real timers
// without slowing the tests.
func fastHook(name, url string) Webhook {
	return Webhook{Name: name, URL: url, InitialBackoff: time.Microsecond, MaxBackoff: 10 * time.Microsecond, MaxAttempts: 8}
}

// harness runs a Notifier and stops it at the end of the test.
type harness struct {
	n      *Notifier
	reg    *metrics.Registry
	logs   *syncBuffer
	cancel context.CancelFunc
	done   chan struct{}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newHarness(t *testing.T, hooks []Webhook, deps Deps) *harness {
	t.Helper()
	h := &harness{reg: metrics.NewRegistry(), logs: &syncBuffer{}}
	deps.Metrics = h.reg
	deps.Log = slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	n, err := New(hooks, deps)
	if err != nil {
		t.Fatal(err)
	}
	h.n = n
	return h
}

func (h *harness) start(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	h.cancel, h.done = cancel, make(chan struct{})
	go func() {
		defer close(h.done)
		if err := h.n.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	t.Cleanup(h.stop)
}

// stop cancels Run and waits for it; the generous limit only turns a hang
// into a clear failure, it asserts no timing.
func (h *harness) stop() {
	h.cancel()
	select {
	case <-h.done:
	case <-time.After(10 * time.Second):
		panic("notify: Run did not return after cancel")
	}
}

// metric returns the value of one exposed series, "" if absent.
func (h *harness) metric(series string) string {
	var b bytes.Buffer
	h.reg.WriteText(&b)
	for line := range strings.Lines(b.String()) {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			return strings.TrimSpace(rest)
		}
	}
	return ""
}

// eventually polls cond; deliveries happen on another goroutine.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestRetriesUntilDelivered(t *testing.T) {
	rc := newReceiver(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		if n <= 3 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	h := newHarness(t, []Webhook{fastHook("sms", rc.srv.URL)}, Deps{Now: func() time.Time { return t0 }})
	h.start(t)
	ev := event("a1", alarm.EventRaise, alarm.Major, 0)
	h.n.Notify(ev)
	eventually(t, "delivery", func() bool { return h.metric(`citywatch_notify_sent_total{hook="sms"}`) == "1" })

	got := rc.requests()
	if len(got) != 4 {
		t.Fatalf("attempts = %d, want 4", len(got))
	}
	for i, r := range got {
		if k := r.header.Get("Idempotency-Key"); k != IdempotencyKey(ev) || k == "" {
			t.Errorf("attempt %d: Idempotency-Key %q, want %q", i+1, k, IdempotencyKey(ev))
		}
		if ct := r.header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("attempt %d: Content-Type %q", i+1, ct)
		}
		if r.raw != got[0].raw {
			t.Errorf("attempt %d: body differs from the first attempt's", i+1)
		}
	}
	p := got[3].body
	if p.Version != 1 || p.Event != alarm.EventRaise || p.Alarm.ID != "a1" || p.Alarm.Severity != "major" || p.Transition.Action != alarm.ActRaise || !p.SentAt.Equal(t0) {
		t.Errorf("payload = %+v", p)
	}
	if v := h.metric(`citywatch_notify_retries_total{hook="sms"}`); v != "3" {
		t.Errorf("retries = %s, want 3", v)
	}
	if v := h.metric(`citywatch_notify_queue_depth{hook="sms"}`); v != "0" {
		t.Errorf("queue depth = %s, want 0", v)
	}
}

func TestPayloadJSONFields(t *testing.T) {
	b, err := encode(event("a1", alarm.EventEscalate, alarm.Critical, 1), t0)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"version", "event", "alarm", "transition", "sent_at"} {
		if _, ok := m[k]; !ok {
			t.Errorf("payload lacks %q: %s", k, b)
		}
	}
	if string(m["event"]) != `"escalate"` || string(m["version"]) != "1" {
		t.Errorf("payload = %s", b)
	}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		status int
		want   verdict
	}{
		{0, retry}, {200, delivered}, {202, delivered}, {204, delivered},
		{301, permanent}, {400, permanent}, {401, permanent}, {404, permanent}, {422, permanent},
		{408, retry}, {429, retry}, {500, retry}, {502, retry}, {503, retry},
	} {
		if got := classify(tc.status); got != tc.want {
			t.Errorf("classify(%d) = %d, want %d", tc.status, got, tc.want)
		}
	}
}

func TestPermanentFailureNotRetried(t *testing.T) {
	rc := newReceiver(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		if n == 1 {
			w.WriteHeader(http.StatusBadRequest)
		}
	})
	h := newHarness(t, []Webhook{fastHook("ticket", rc.srv.URL)}, Deps{})
	h.start(t)
	h.n.Notify(event("bad", alarm.EventRaise, alarm.Major, 0))
	h.n.Notify(event("good", alarm.EventRaise, alarm.Major, 0))
	eventually(t, "second event", func() bool { return h.metric(`citywatch_notify_sent_total{hook="ticket"}`) == "1" })
	got := rc.requests()
	if len(got) != 2 || got[0].body.Alarm.ID != "bad" || got[1].body.Alarm.ID != "good" {
		t.Fatalf("requests = %+v, want bad once then good", got)
	}
	if v := h.metric(`citywatch_notify_failed_total{hook="ticket",reason="rejected"}`); v != "1" {
		t.Errorf("failed{rejected} = %q, want 1", v)
	}
	if v := h.metric(`citywatch_notify_retries_total{hook="ticket"}`); v != "0" {
		t.Errorf("retries = %q, want 0", v)
	}
}

func TestExhaustedAfterMaxAttempts(t *testing.T) {
	rc := newReceiver(t, func(_ int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusBadGateway) })
	w := fastHook("sms", rc.srv.URL)
	w.MaxAttempts = 3
	h := newHarness(t, []Webhook{w}, Deps{})
	h.start(t)
	h.n.Notify(event("a1", alarm.EventRaise, alarm.Major, 0))
	eventually(t, "give up", func() bool {
		return h.metric(`citywatch_notify_failed_total{hook="sms",reason="exhausted"}`) == "1"
	})
	if n := len(rc.requests()); n != 3 {
		t.Errorf("attempts = %d, want 3", n)
	}
}

func TestNetworkErrorRetried(t *testing.T) {
	// The first connection is cut before any response; the retry succeeds.
	rc := newReceiver(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		if n == 1 {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
		}
	})
	h := newHarness(t, []Webhook{fastHook("sms", rc.srv.URL)}, Deps{})
	h.start(t)
	h.n.Notify(event("a1", alarm.EventRaise, alarm.Major, 0))
	eventually(t, "delivery", func() bool { return h.metric(`citywatch_notify_sent_total{hook="sms"}`) == "1" })
	if v := h.metric(`citywatch_notify_retries_total{hook="sms"}`); v != "1" {
		t.Errorf("retries = %q, want 1", v)
	}
}

// waits records the backoffs asked for and returns at once.
type waits struct {
	mu sync.Mutex
	d  []time.Duration
}

func (w *waits) wait(ctx context.Context, d time.Duration) error {
	w.mu.Lock()
	w.d = append(w.d, d)
	w.mu.Unlock()
	return ctx.Err()
}

func (w *waits) all() []time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]time.Duration(nil), w.d...)
}

func TestRetryAfterHonoured(t *testing.T) {
	rc := newReceiver(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		if n == 1 {
			w.Header().Set("Retry-After", "2")
			w.WriteHeader(http.StatusTooManyRequests)
		}
	})
	ws := &waits{}
	h := newHarness(t, []Webhook{fastHook("sms", rc.srv.URL)}, Deps{Wait: ws.wait})
	h.start(t)
	h.n.Notify(event("a1", alarm.EventRaise, alarm.Major, 0))
	eventually(t, "delivery", func() bool { return h.metric(`citywatch_notify_sent_total{hook="sms"}`) == "1" })
	if got := ws.all(); len(got) != 1 || got[0] != 2*time.Second {
		t.Errorf("waits = %v, want [2s] from Retry-After", got)
	}
}

func TestParseRetryAfter(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{"", 0}, {"3", 3 * time.Second}, {"-1", 0}, {"soon", 0},
		{t0.Add(30 * time.Second).Format(http.TimeFormat), 30 * time.Second},
		{t0.Add(-time.Minute).Format(http.TimeFormat), 0},
		{"86400", maxRetryAfter},
	} {
		if got := parseRetryAfter(tc.in, t0); got != tc.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestBackoffGrowsCappedWithJitter(t *testing.T) {
	for n, base := range []time.Duration{1, 2, 4, 8, 10, 10} {
		base *= time.Second
		for range 50 {
			d := backoff(n+1, time.Second, 10*time.Second)
			if d < base/2 || d > base {
				t.Fatalf("backoff(%d) = %v, want in [%v, %v]", n+1, d, base/2, base)
			}
		}
	}
}

func TestMatch(t *testing.T) {
	first := Webhook{Name: "sms", URL: "http://x"}.withDefaults() // tiers [0], kinds raise/escalate/clear
	pager := Webhook{Name: "pager", URL: "http://x", Tiers: []int{1, 2}, MinSeverity: alarm.Major}.withDefaults()
	all := Webhook{Name: "ticket", URL: "http://x", Kinds: knownKinds}.withDefaults()
	for _, tc := range []struct {
		name string
		hook Webhook
		ev   alarm.Event
		want bool
	}{
		{"raise tier 0", first, event("a", alarm.EventRaise, alarm.Warning, 0), true},
		{"update not in default kinds", first, event("a", alarm.EventUpdate, alarm.Major, 0), false},
		{"update when asked for", all, event("a", alarm.EventUpdate, alarm.Major, 0), true},
		{"flap when asked for", all, event("a", alarm.EventFlap, alarm.Major, 0), true},
		{"escalate goes to next tier only", first, event("a", alarm.EventEscalate, alarm.Major, 1), false},
		{"escalate to pager tier 1", pager, event("a", alarm.EventEscalate, alarm.Major, 1), true},
		{"escalate to pager tier 2", pager, event("a", alarm.EventEscalate, alarm.Critical, 2), true},
		{"escalate beyond pager tiers", pager, event("a", alarm.EventEscalate, alarm.Critical, 3), false},
		{"pager not told of raise", pager, event("a", alarm.EventRaise, alarm.Critical, 0), false},
		{"pager told of clear after paging", pager, event("a", alarm.EventClear, alarm.Critical, 1), true},
		{"pager not told of clear before paging", pager, event("a", alarm.EventClear, alarm.Critical, 0), false},
		{"first tier told of clear after escalation", first, event("a", alarm.EventClear, alarm.Major, 2), true},
		{"below min severity", pager, event("a", alarm.EventEscalate, alarm.Minor, 1), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.hook.match(tc.ev); got != tc.want {
				t.Errorf("match = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestFilteredEventsNotSent(t *testing.T) {
	rc := newReceiver(t, nil)
	w := fastHook("pager", rc.srv.URL)
	w.Tiers, w.MinSeverity = []int{1}, alarm.Major
	h := newHarness(t, []Webhook{w}, Deps{})
	h.start(t)
	h.n.Notify(event("raise", alarm.EventRaise, alarm.Critical, 0))   // tier 0: not the pager's
	h.n.Notify(event("minor", alarm.EventEscalate, alarm.Minor, 1))   // below severity
	h.n.Notify(event("ack", alarm.EventUpdate, alarm.Critical, 1))    // kind not wanted
	h.n.Notify(event("page", alarm.EventEscalate, alarm.Critical, 1)) // the one
	eventually(t, "delivery", func() bool { return h.metric(`citywatch_notify_sent_total{hook="pager"}`) == "1" })
	h.stop()
	if got := rc.requests(); len(got) != 1 || got[0].body.Alarm.ID != "page" {
		t.Errorf("requests = %+v, want only page", got)
	}
}

func TestQueueOverflowDropped(t *testing.T) {
	w := fastHook("sms", "http://127.0.0.1:1/")
	w.QueueLen = 2
	h := newHarness(t, []Webhook{w}, Deps{})
	// Not running: nothing drains the queue, and Notify must still return.
	for i := range 5 {
		h.n.Notify(event(string(rune('a'+i)), alarm.EventRaise, alarm.Major, 0))
	}
	if v := h.metric(`citywatch_notify_dropped_total{hook="sms"}`); v != "3" {
		t.Errorf("dropped = %q, want 3", v)
	}
	if v := h.metric(`citywatch_notify_queue_depth{hook="sms"}`); v != "2" {
		t.Errorf("queue depth = %q, want 2", v)
	}
}

func TestOrderPreservedPerHook(t *testing.T) {
	// Every third request fails once, so retries are interleaved with
	// fresh events; the receiver must still see them in order.
	var mu sync.Mutex
	failed := map[string]bool{}
	rc := newReceiver(t, nil)
	rc.answer = func(n int, w http.ResponseWriter, _ *http.Request) {
		rc.mu.Lock()
		id := rc.got[n-1].body.Alarm.ID
		rc.mu.Unlock()
		mu.Lock()
		defer mu.Unlock()
		if n%3 == 0 && !failed[id] {
			failed[id] = true
			w.WriteHeader(http.StatusInternalServerError)
		}
	}
	h := newHarness(t, []Webhook{fastHook("sms", rc.srv.URL)}, Deps{})
	h.start(t)
	const count = 40
	var want []string
	for i := range count {
		id := "a" + time.Duration(i).String()
		want = append(want, id)
		h.n.Notify(event(id, alarm.EventRaise, alarm.Major, 0))
	}
	eventually(t, "all delivered", func() bool { return h.metric(`citywatch_notify_sent_total{hook="sms"}`) == "40" })
	var got []string
	for _, r := range rc.requests() {
		if len(got) == 0 || got[len(got)-1] != r.body.Alarm.ID {
			got = append(got, r.body.Alarm.ID)
		}
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("order:\n got %v\nwant %v", got, want)
	}
}

func TestCancelStopsPromptly(t *testing.T) {
	for _, tc := range []struct {
		name   string
		answer func(int, http.ResponseWriter, *http.Request)
	}{
		// Backing off for an hour after a 503: cancel must cut the wait.
		{"during backoff", func(_ int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) }},
		// The receiver hangs: cancel must abort the attempt in flight.
		{"during attempt", func(_ int, _ http.ResponseWriter, r *http.Request) { <-r.Context().Done() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := newReceiver(t, tc.answer)
			w := Webhook{Name: "sms", URL: rc.srv.URL, InitialBackoff: time.Hour, MaxBackoff: time.Hour, Timeout: time.Hour}
			h := newHarness(t, []Webhook{w}, Deps{})
			h.start(t)
			for i := range 4 {
				h.n.Notify(event(string(rune('a'+i)), alarm.EventRaise, alarm.Major, 0))
			}
			eventually(t, "first attempt", func() bool { return len(rc.requests()) == 1 })
			h.stop()
			if v := h.metric(`citywatch_notify_failed_total{hook="sms",reason="shutdown"}`); v != "4" {
				t.Errorf("failed{shutdown} = %q, want 4", v)
			}
			if v := h.metric(`citywatch_notify_queue_depth{hook="sms"}`); v != "0" {
				t.Errorf("queue depth = %q, want 0", v)
			}
			if !strings.Contains(h.logs.String(), "undelivered=4") {
				t.Errorf("log does not report the 4 undelivered events:\n%s", h.logs)
			}
			// After Run: still non-blocking, and counted.
			h.n.Notify(event("late", alarm.EventRaise, alarm.Major, 0))
			if v := h.metric(`citywatch_notify_failed_total{hook="sms",reason="shutdown"}`); v != "5" {
				t.Errorf("failed{shutdown} after a late Notify = %q, want 5", v)
			}
		})
	}
}

func TestHeadersSentSecretsNotLogged(t *testing.T) {
	const token, pass, query = "Bearer tok-s3cr3t", "pw-hunter2", "qs-t0ken"
	rc := newReceiver(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		switch n {
		case 1:
			w.WriteHeader(http.StatusInternalServerError)
		case 2:
			w.WriteHeader(http.StatusUnauthorized)
		}
	})
	url := strings.Replace(rc.srv.URL, "http://", "http://user:"+pass+"@", 1) + "/hook?token=" + query
	w := fastHook("sms", url)
	w.Headers = map[string]string{"Authorization": token, "X-Tenant": "city"}
	// A second hook on a closed port: its network errors are logged too.
	dead := fastHook("dead", "http://user:"+pass+"@127.0.0.1:1/x?token="+query)
	dead.MaxAttempts = 2
	h := newHarness(t, []Webhook{w, dead}, Deps{})
	h.start(t)
	h.n.Notify(event("a1", alarm.EventRaise, alarm.Major, 0))
	eventually(t, "rejection", func() bool {
		return h.metric(`citywatch_notify_failed_total{hook="sms",reason="rejected"}`) == "1" &&
			h.metric(`citywatch_notify_failed_total{hook="dead",reason="exhausted"}`) == "1"
	})
	h.stop()
	for i, r := range rc.requests() {
		if got := r.header.Get("Authorization"); got != token {
			t.Errorf("attempt %d: Authorization %q, want %q", i+1, got, token)
		}
		if got := r.header.Get("X-Tenant"); got != "city" {
			t.Errorf("attempt %d: X-Tenant %q", i+1, got)
		}
	}
	logs := h.logs.String()
	for _, secret := range []string{"tok-s3cr3t", pass, query} {
		if strings.Contains(logs, secret) {
			t.Errorf("log leaks %q:\n%s", secret, logs)
		}
	}
	if !strings.Contains(logs, "Authorization") {
		t.Errorf("log should name the configured headers:\n%s", logs)
	}
}

func TestValidate(t *testing.T) {
	if err := Validate([]Webhook{{Name: "ok", URL: "https://example.org/hook"}}); err != nil {
		t.Errorf("valid hook: %v", err)
	}
	err := Validate([]Webhook{
		{URL: "ftp://example.org"},
		{Name: "dup", URL: "http://a", MinSeverity: 9, Kinds: []alarm.EventKind{"bogus"}, Tiers: []int{-1}},
		{Name: "dup", URL: "http://a", Timeout: -1, MaxAttempts: -1, QueueLen: -1, InitialBackoff: time.Minute, MaxBackoff: time.Second},
		{Name: "relative", URL: "/hook"},
	})
	if err == nil {
		t.Fatal("want errors")
	}
	for _, want := range []string{
		"webhook 0: name is required", "webhook 0: url", `"dup": min severity`, `"dup": unknown event kind`,
		`"dup": tier -1`, `"dup": duplicate name`, `"dup": timeout`, `"dup": max attempts`, `"dup": queue length`,
		`"dup": max backoff`, `"relative": url`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if _, err := New([]Webhook{{Name: "x"}}, Deps{}); err == nil {
		t.Error("New accepted a hook without URL")
	}
}

func TestWebhookLogValueRedacts(t *testing.T) {
	w := Webhook{Name: "sms", URL: "https://u:pw@gw.example/send?key=k1", Headers: map[string]string{"Authorization": "secret"}}
	var b bytes.Buffer
	slog.New(slog.NewJSONHandler(&b, nil)).Info("x", "hook", w)
	s := b.String()
	if strings.Contains(s, "secret") || strings.Contains(s, "pw") || strings.Contains(s, "k1") {
		t.Errorf("LogValue leaks: %s", s)
	}
	if !strings.Contains(s, "https://gw.example/send") {
		t.Errorf("LogValue lost the URL: %s", s)
	}
}
