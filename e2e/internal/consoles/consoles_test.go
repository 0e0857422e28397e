package consoles

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/gorilla/websocket"
)

// A hub stand-in sends each console a message when told; Run's consoles
// record only what arrives in a phase, count alarm events whether raises
// or not, and decode only the raises, with the latency from the
// transition's time, each once.
func TestRunRecordsRaisesByPhase(t *testing.T) {
	var mu sync.Mutex
	var conns []*websocket.Conn
	tokens := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/events" || r.URL.Query().Get("batch") != "1" {
			http.Error(w, "not the events stream", http.StatusNotFound)
			return
		}
		conn, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		mu.Lock()
		conns = append(conns, conn)
		tokens[r.Header.Get("Authorization")]++
		mu.Unlock()
	}))
	defer srv.Close()
	send := func(msg string) {
		t.Helper()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
				t.Fatal(err)
			}
		}
	}
	raise := func(id string, at time.Time) string {
		return fmt.Sprintf(`{"type":"alarm","event":{"kind":"raise","alarm":{"id":%q,"source":"agent_offline","agent":"ag-%s"},"transition":{"at":%q}}}`,
			id, id, at.Format(time.RFC3339Nano))
	}

	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- Run(context.Background(), Options{URL: srv.URL + "/", Tokens: []string{"a", "b"}, N: 3}, inR, outW)
		outW.Close()
	}()
	out := json.NewDecoder(bufio.NewReader(outR))
	ask := func(cmd string, v any) {
		t.Helper()
		if _, err := fmt.Fprintln(inW, cmd); err != nil {
			t.Fatal(err)
		}
		if err := out.Decode(v); err != nil {
			t.Fatalf("%s: %v", cmd, err)
		}
	}
	var hello struct{ Connected int }
	if err := out.Decode(&hello); err != nil || hello.Connected != 3 {
		t.Fatalf("hello %+v, %v; want 3 connected", hello, err)
	}
	// The handshake ends before the handler has recorded the connection.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		mu.Lock()
		n, a, b := len(conns), tokens["Bearer a"], tokens["Bearer b"]
		mu.Unlock()
		if n == 3 {
			if a != 2 || b != 1 {
				t.Errorf("tokens used a %d times, b %d; want a twice and b once", a, b)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d connections", n)
		}
	}

	waitFor := func(phase, items int) Counts {
		t.Helper()
		var c Counts
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			ask("counts", &c)
			n := 0
			for _, it := range c.Items {
				n += it[phase]
			}
			if n >= items {
				return c
			}
			if time.Now().After(deadline) {
				t.Fatalf("phase %d: counts %+v, want %d alarm events", phase, c, items)
			}
		}
	}
	at := time.Now().Add(-50 * time.Millisecond)
	send(raise("idle", at)) // phase 0: not recorded
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		var c Counts
		if ask("counts", &c); c.Messages[0] == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the idle message did not arrive")
		}
	}
	ask("phase 2", &struct{}{})
	send(`{"type":"batch","items":[` + raise("one", at) + `,{"type":"changes","after":1,"upto":2,"changes":[]},` + raise("two", at) +
		`,{"type":"alarm","event":{"kind":"ack","alarm":{"id":"one"},"transition":{"at":"2026-01-01T00:00:00Z"}}}]}`)
	c := waitFor(2, 9)
	if c.Messages[2] != 3 || c.Bytes[2] == 0 || c.Items[0][0] != 0 {
		t.Errorf("counts %+v: want 3 messages in phase 2, none recorded in phase 0", c)
	}
	var r struct{ Raises []Raise }
	ask("raises", &r)
	if len(r.Raises) != 6 {
		t.Fatalf("raises %+v, want two for each of three consoles", r.Raises)
	}
	seen := map[string]int{}
	for _, x := range r.Raises {
		seen[fmt.Sprint(x.Console, x.ID)]++
		if x.Phase != 2 || x.Agent != "ag-"+x.ID || x.Latency < 50*time.Millisecond || !x.At.After(at) {
			t.Errorf("raise %+v: want phase 2, its agent, latency from the transition's at", x)
		}
	}
	for i := range 3 {
		if seen[fmt.Sprint(i, "one")] != 1 || seen[fmt.Sprint(i, "two")] != 1 {
			t.Errorf("console %d: raises %v, want one and two once", i, seen)
		}
	}
	ask("raises", &r)
	if len(r.Raises) != 0 {
		t.Errorf("raises again: %+v, want none new", r.Raises)
	}

	fmt.Fprintln(inW, "dance")
	if err := <-done; err == nil || !strings.Contains(err.Error(), "unknown command") {
		t.Errorf("Run after an unknown command: %v", err)
	}
}

// TestArenaKeepsMessagesIntact reads messages of every size around a
// chunk's end into an arena, keeping some and dropping others, and checks
// that every kept message still holds its own bytes at the end: a new
// chunk must not move or overwrite what was kept, and a dropped message's
// space is reused.
func TestArenaKeepsMessagesIntact(t *testing.T) {
	a := arena{buf: make([]byte, 0, 1000)}
	var kept [][]byte
	var want []string
	for i := range 400 {
		size := i * 7919 % (arenaChunk / 2) // many messages across a chunk's end
		if i == 200 {
			size = 2*arenaChunk + 3 // larger than a chunk
		}
		body := strings.Repeat(string(rune('a'+i%26)), size)
		msg, err := a.read(iotest.HalfReader(strings.NewReader(body)))
		if err != nil {
			t.Fatal(err)
		}
		if string(msg) != body {
			t.Fatalf("message %d: read %d bytes %.20q, want %d", i, len(msg), msg, len(body))
		}
		if i%3 == 0 {
			a.drop(msg)
			continue
		}
		kept, want = append(kept, msg), append(want, body)
	}
	for i, m := range kept {
		if string(m) != want[i] {
			t.Fatalf("kept message %d changed: %.20q, want %.20q", i, m, want[i])
		}
	}
	if _, err := a.read(iotest.ErrReader(io.ErrUnexpectedEOF)); err != io.ErrUnexpectedEOF {
		t.Fatalf("a failing read: %v, want %v", err, io.ErrUnexpectedEOF)
	}
}
