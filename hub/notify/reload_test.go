package notify

import (
	"net/http"
	"sync"
	"testing"

	"github.com/citywatch/citywatch/hub/alarm"
)

// TestSetWebhooks: a reload adds a hook (its sender starts), keeps an
// unchanged one, and retires a removed one only after it delivered what
// was queued for it; a bad set changes nothing.
func TestSetWebhooks(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	slow := newReceiver(t, func(n int, _ http.ResponseWriter, _ *http.Request) {
		if n == 1 {
			<-release // hold the first delivery, so the rest stay queued
		}
	})
	kept := newReceiver(t, nil)
	added := newReceiver(t, nil)
	h := newHarness(t, []Webhook{fastHook("old", slow.srv.URL), fastHook("kept", kept.srv.URL)}, Deps{})
	h.start(t)
	defer once.Do(func() { close(release) })

	for _, id := range []string{"a1", "a2", "a3"} {
		h.n.Notify(event(id, alarm.EventRaise, alarm.Major, 0))
	}
	eventually(t, "the first delivery to the old hook", func() bool { return len(slow.requests()) == 1 })

	if err := h.n.SetWebhooks([]Webhook{{Name: "", URL: "ftp://x"}}); err == nil {
		t.Fatal("an invalid set was accepted")
	}
	if err := h.n.SetWebhooks([]Webhook{fastHook("kept", kept.srv.URL), fastHook("new", added.srv.URL)}); err != nil {
		t.Fatal(err)
	}
	h.n.Notify(event("a4", alarm.EventRaise, alarm.Major, 0))
	once.Do(func() { close(release) })

	eventually(t, "the old hook's queue delivered", func() bool { return len(slow.requests()) == 3 })
	eventually(t, "a4 at the new hook", func() bool { return len(added.requests()) == 1 })
	eventually(t, "four events at the kept hook", func() bool { return len(kept.requests()) == 4 })
	if got := added.requests()[0].body.Alarm.ID; got != "a4" {
		t.Fatalf("the new hook got %s, want only what came after the reload", got)
	}
	for i, r := range slow.requests() {
		if want := []string{"a1", "a2", "a3"}[i]; r.body.Alarm.ID != want {
			t.Fatalf("old hook request %d is %s, want %s", i, r.body.Alarm.ID, want)
		}
	}
	h.n.Notify(event("a5", alarm.EventRaise, alarm.Major, 0))
	eventually(t, "a5 at the kept hook", func() bool { return len(kept.requests()) == 5 })
	if n := len(slow.requests()); n != 3 {
		t.Fatalf("the retired hook got %d requests, want 3", n)
	}
	// Counted once its answer is back, a moment after the receiver saw it.
	eventually(t, "the old hook's three counted as sent", func() bool {
		return h.metric(`citywatch_notify_sent_total{hook="old"}`) == "3"
	})
}
