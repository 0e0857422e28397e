package announce

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/citywatch/citywatch/internal/testenv"
)

// A full queue refuses at once and counts; what was queued is sent in
// order, the rest of the queue too when the context ends.
func TestQueue(t *testing.T) {
	srv := testenv.NATS(t)
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	got := make(chan int, 10)
	sub, err := nc.Subscribe("cw.test.hub-a", func(m *nats.Msg) {
		var n int
		if err := json.Unmarshal(m.Data, &n); err != nil {
			t.Error(err)
		}
		got <- n
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	q := New[int]("cw.test.hub-a", 3, slog.New(slog.NewTextHandler(io.Discard, nil)), "test announcements lost")
	for i := 1; i <= 4; i++ {
		if ok := q.Put(i); ok != (i <= 3) {
			t.Errorf("Put(%d) = %v with a queue of 3", i, ok)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // Run sends what is queued and returns
	q.Run(ctx, nc)
	for want := 1; want <= 3; want++ {
		select {
		case n := <-got:
			if n != want {
				t.Fatalf("announcement %d arrived as number %d", n, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("announcement %d did not arrive", want)
		}
	}
	if q.Sent() != 3 || q.Dropped() != 1 {
		t.Errorf("sent %d, dropped %d; want 3 and 1", q.Sent(), q.Dropped())
	}
}
