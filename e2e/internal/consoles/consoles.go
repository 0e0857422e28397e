// Package consoles is the alarm storm benchmark's consoles: websocket
// clients of /api/events?batch=1, as the browser console opens it, run in
// a process of their own (cmd/consoles) so that what they cost is not
// counted as the hub's and the simulated city does not slow their reading
// down. During a measured phase a console only reads: each message that
// holds an alarm event is kept undecoded with the time it arrived, and
// decoding waits until the benchmark asks for the raises.
//
// The benchmark drives the process with one command per line on its
// stdin, each answered by one line of JSON on its stdout:
//
//	phase N   record what arrives from now on as phase N (0: nothing); {}
//	counts    Counts
//	raises    {"raises": [Raise...]}: those decoded since the last call
//
// The first line, unasked, is {"connected": n} once every console is
// connected.
package consoles

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/citywatch/citywatch/hub/alarm"
)

// Phases are 0 (idle: nothing recorded) up to, not including, NumPhases.
const NumPhases = 3

// Options say where to connect and as whom.
type Options struct {
	URL    string   // the hub's base URL, http://host:port/
	Tokens []string // bearer tokens: console i uses Tokens[i%len(Tokens)]
	N      int      // consoles
}

// Raise is one alarm raise as a console received it.
type Raise struct {
	Console int           `json:"console"`
	Phase   int32         `json:"phase"`
	ID      string        `json:"id"`
	Source  alarm.Source  `json:"source"`
	Agent   string        `json:"agent,omitempty"`
	Device  string        `json:"device,omitempty"`
	At      time.Time     `json:"at"`      // receipt
	Latency time.Duration `json:"latency"` // receipt − the transition's at
}

// Counts is what the consoles have received so far.
type Counts struct {
	// Items counts alarm events by console and phase, decoded or not.
	Items [][NumPhases]int `json:"items"`
	// Messages and Bytes received in each phase, over every console.
	Messages [NumPhases]int64 `json:"messages"`
	Bytes    [NumPhases]int64 `json:"bytes"`
	Closed   int64            `json:"closed"` // connections that ended
}

// Run connects the consoles and answers commands from in on out until in
// ends or ctx does.
func Run(ctx context.Context, o Options, in io.Reader, out io.Writer) error {
	if o.URL == "" || len(o.Tokens) == 0 || o.N < 1 {
		return errors.New("want a hub URL, tokens and consoles above 0")
	}
	s := &set{consoles: make([]*console, o.N)}
	if err := s.connect(ctx, o); err != nil {
		return err
	}
	defer s.close()
	enc := json.NewEncoder(out)
	if err := enc.Encode(map[string]int{"connected": o.N}); err != nil {
		return err
	}
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		var reply any
		switch cmd, arg, _ := strings.Cut(strings.TrimSpace(sc.Text()), " "); cmd {
		case "phase":
			p, err := strconv.Atoi(arg)
			if err != nil || p < 0 || p >= NumPhases {
				return fmt.Errorf("phase %q: want 0 to %d", arg, NumPhases-1)
			}
			s.phase.Store(int32(p))
			reply = struct{}{}
		case "counts":
			reply = s.counts()
		case "raises":
			rs, err := s.raises()
			if err != nil {
				return err
			}
			reply = map[string][]Raise{"raises": rs}
		default:
			return fmt.Errorf("unknown command %q", sc.Text())
		}
		if err := enc.Encode(reply); err != nil {
			return err
		}
	}
	return sc.Err()
}

type set struct {
	phase    atomic.Int32
	closed   atomic.Int64
	messages [NumPhases]atomic.Int64
	bytes    [NumPhases]atomic.Int64
	consoles []*console
	conns    []*websocket.Conn
	mu       sync.Mutex // guards conns
}

// console is one connection's record.
type console struct {
	mu    sync.Mutex
	raw   []message // not yet decoded
	items [NumPhases]int
}

// message is a received message that holds alarm events.
type message struct {
	phase int32
	at    time.Time
	data  []byte
}

// alarmPrefix opens every alarm event, alone or as a batch's item; no
// string in JSON can contain it unescaped.
var alarmPrefix = []byte(`{"type":"alarm"`)

// connect dials every console, 64 at a time, and starts its reader.
func (s *set) connect(ctx context.Context, o Options) error {
	dialer := websocket.Dialer{HandshakeTimeout: 30 * time.Second, ReadBufferSize: 16 << 10, WriteBufferSize: 1 << 10}
	url := "ws" + strings.TrimPrefix(o.URL, "http") + "api/events?batch=1"
	var wg sync.WaitGroup
	var failed atomic.Value
	sem := make(chan struct{}, 64)
	for i := range o.N {
		c := &console{}
		s.consoles[i] = c
		header := http.Header{"Authorization": {"Bearer " + o.Tokens[i%len(o.Tokens)]}}
		wg.Go(func() {
			sem <- struct{}{}
			conn, res, err := dialer.DialContext(ctx, url, header)
			<-sem
			if res != nil && res.Body != nil {
				res.Body.Close()
			}
			if err != nil {
				failed.Store(fmt.Errorf("console %d: %w", i, err))
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, conn)
			s.mu.Unlock()
			go s.read(conn, c)
		})
	}
	wg.Wait()
	if err, ok := failed.Load().(error); ok {
		s.close()
		return err
	}
	return nil
}

func (s *set) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.Close()
	}
}

// read keeps what c receives until the connection ends.
func (s *set) read(conn *websocket.Conn, c *console) {
	defer s.closed.Add(1)
	a := newArena()
	for {
		_, r, err := conn.NextReader()
		if err != nil {
			return
		}
		at := time.Now()
		msg, err := a.read(r)
		if err != nil {
			return
		}
		phase := s.phase.Load()
		s.messages[phase].Add(1)
		s.bytes[phase].Add(int64(len(msg)))
		n := 0
		if phase != 0 {
			n = bytes.Count(msg, alarmPrefix)
		}
		if n == 0 {
			a.drop(msg)
			continue
		}
		c.mu.Lock()
		c.raw = append(c.raw, message{phase, at, msg})
		c.items[phase] += n
		c.mu.Unlock()
	}
}

// arena holds a console's received messages back to back, so that taking
// one in costs a single copy, from the socket into place, and no
// allocation while the chunk has room: in the storm a thousand consoles
// take in over a hundred megabytes within a second on the machine whose
// CPU the hub needs, and a buffer grown per message and then cloned cost
// three copies and the zeroing of every clone. A message that does not
// fit starts a new chunk; the messages kept from the old one keep it
// alive.
type arena struct{ buf []byte }

// arenaChunk is the size of a new chunk, more than a console receives in
// the storm.
const arenaChunk = 256 << 10

// newArena returns an arena with its first chunk in memory: its pages are
// touched now rather than faulted in one by one when the storm's messages
// arrive, which costs the consoles' process more than the copying.
func newArena() arena {
	buf := make([]byte, arenaChunk)
	for i := 0; i < len(buf); i += 4096 {
		buf[i] = 1
	}
	return arena{buf: buf[:0]}
}

// read appends the message r yields to the arena and returns it.
func (a *arena) read(r io.Reader) ([]byte, error) {
	start := len(a.buf)
	for {
		if len(a.buf) == cap(a.buf) {
			part := a.buf[start:]
			next := make([]byte, len(part), max(arenaChunk, 2*len(part)))
			copy(next, part)
			a.buf, start = next, 0
		}
		n, err := r.Read(a.buf[len(a.buf):cap(a.buf)])
		a.buf = a.buf[:len(a.buf)+n]
		switch {
		case err == io.EOF:
			return a.buf[start:len(a.buf):len(a.buf)], nil
		case err != nil:
			return nil, err
		}
	}
}

// drop gives back the space of msg, the message read last.
func (a *arena) drop(msg []byte) { a.buf = a.buf[:len(a.buf)-len(msg)] }

func (s *set) counts() Counts {
	out := Counts{Items: make([][NumPhases]int, len(s.consoles)), Closed: s.closed.Load()}
	for i, c := range s.consoles {
		c.mu.Lock()
		out.Items[i] = c.items
		c.mu.Unlock()
	}
	for p := range NumPhases {
		out.Messages[p], out.Bytes[p] = s.messages[p].Load(), s.bytes[p].Load()
	}
	return out
}

// event is what a console reads of an alarm event.
type event struct {
	Event struct {
		Kind  alarm.EventKind `json:"kind"`
		Alarm struct {
			ID     string       `json:"id"`
			Source alarm.Source `json:"source"`
			Agent  string       `json:"agent"`
			Device string       `json:"device"`
		} `json:"alarm"`
		Transition struct {
			At time.Time `json:"at"`
		} `json:"transition"`
	} `json:"event"`
}

// raises decodes what every console received since the last call and
// returns the raises in it. It fails on an alarm event it cannot decode.
func (s *set) raises() ([]Raise, error) {
	var out []Raise
	for i, c := range s.consoles {
		c.mu.Lock()
		raw := c.raw
		c.raw = nil
		c.mu.Unlock()
		for _, m := range raw {
			rest := m.data
			for k := bytes.Index(rest, alarmPrefix); k >= 0; k = bytes.Index(rest, alarmPrefix) {
				rest = rest[k:]
				var e event
				d := json.NewDecoder(bytes.NewReader(rest))
				if err := d.Decode(&e); err != nil {
					return nil, fmt.Errorf("console %d: alarm event %.80q: %w", i, rest, err)
				}
				rest = rest[d.InputOffset():]
				if e.Event.Kind != alarm.EventRaise {
					continue
				}
				a := e.Event.Alarm
				out = append(out, Raise{Console: i, Phase: m.phase, ID: a.ID, Source: a.Source, Agent: a.Agent, Device: a.Device,
					At: m.at, Latency: m.at.Sub(e.Event.Transition.At)})
			}
		}
	}
	return out, nil
}
