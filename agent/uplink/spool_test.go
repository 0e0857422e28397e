package uplink

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/citywatch/citywatch/agent/internal/wiretest"
	"github.com/citywatch/citywatch/internal/testenv"
	"github.com/citywatch/citywatch/wire"
)

// testClock is the client's clock in a test: set by hand, and moving on by
// step at every reading.
type testClock struct {
	mu   sync.Mutex
	t    time.Time
	step time.Duration
}

func newTestClock(t time.Time) *testClock { return &testClock{t: t} }

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.t
	c.t = c.t.Add(c.step)
	return t
}

func (c *testClock) set(t time.Time, step time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t, c.step = t, step
}

// outage stops the broker under a connected client.
func outage(t *testing.T, broker *testenv.Broker, c *Client) {
	t.Helper()
	wiretest.Eventually(t, "connected", func() bool { return c.Stats().Published >= 2 })
	broker.Stop()
	wiretest.Eventually(t, "disconnected", func() bool { return !c.Stats().Connected })
}

// healthLines is a report of n devices named after report number i, so a
// received report says which it was.
func healthLines(i, n int) []wire.DeviceHealth {
	var devs []wire.DeviceHealth
	for d := range n {
		devs = append(devs, wire.DeviceHealth{ID: fmt.Sprintf("r%d-d%d", i, d), Status: wire.StatusOffline, Since: time.Unix(1e9, 0)})
	}
	return devs
}

// msgLabel names a received report or event as the test made it.
func msgLabel(m wire.Message) string {
	if m.Health != nil {
		id, _, _ := strings.Cut(m.Health.Devices[0].ID, "-")
		return "h:" + id[1:]
	}
	return "e:" + m.Event.Detail
}

// TestSpoolBacklog: health reports and events made while the broker is
// down go to the spool; after the reconnect they arrive, all of them, in
// the order they were made, with the seqs and times they were made with.
// A report made after the reconnect does not wait for the backlog, which
// goes at its own pace.
func TestSpoolBacklog(t *testing.T) {
	broker := testenv.Mosquitto(t)
	w := wiretest.Watch(t, broker.URL(), "agent-s1")
	start := time.Now().Add(-time.Hour)
	clk := newTestClock(start)
	c, _ := startClient(t, broker.URL(), "agent-s1", func(cfg *Config) {
		cfg.SpoolDir, cfg.SpoolBytes = t.TempDir(), 1<<20
		cfg.ResendRate = 1 // one token, and the clock decides when the next comes
		cfg.now = clk.now
		cfg.segmentSize = 2 << 10 // several segment files per chain
	})
	w.State(wire.AgentOnline)
	inv := w.Next(wire.ChannelInventory, nil).Inventory
	outage(t, broker, c)

	// 10 reports and 30 events, interleaved; made at start + i seconds.
	var made []string
	for i := range 40 {
		clk.set(start.Add(time.Duration(i)*time.Second), 0)
		if i%4 == 0 {
			c.PublishHealth(healthLines(i, 3))
			made = append(made, "h:"+strconv.Itoa(i))
		} else {
			c.PublishEvent(wire.Event{Device: "cam-1", Type: wire.EventTriggered, Detail: strconv.Itoa(i), At: start})
			made = append(made, "e:"+strconv.Itoa(i))
		}
	}
	if s := c.Stats(); s.Spooled != 40 || s.SpoolQueued != 40 || s.SpoolBytes == 0 || s.Queued != 0 || s.DroppedHealth+s.DroppedEvents != 0 {
		t.Fatalf("stats while down: %+v; want 40 spooled and waiting, none in memory, none dropped", s)
	}

	// The clock stands still: the backlog gets its one token and waits.
	frozen := start.Add(time.Minute)
	clk.set(frozen, 0)
	broker.Restart()
	birth := w.Next(wire.ChannelState, func(m wire.Message) bool { return m.State.State == wire.AgentOnline && m.State.Conn == 2 }).State

	var got []wire.Message
	record := func(m wire.Message) {
		if m.Health != nil || m.Event != nil {
			got = append(got, m)
		}
	}
	c.PublishEvent(wire.Event{Device: "cam-1", Type: wire.EventTriggered, Detail: "fresh", At: frozen})
	for {
		m := w.Any()
		if m.Event != nil && m.Event.Detail == "fresh" {
			if m.Event.Seq <= birth.Seq || !m.Event.TS.Equal(frozen) {
				t.Errorf("fresh event seq %d ts %v; want after the birth's %d, made at %v", m.Event.Seq, m.Event.TS, birth.Seq, frozen)
			}
			break
		}
		record(m)
	}
	if s := c.Stats(); s.SpoolQueued < 39 {
		t.Fatalf("the fresh event waited for the backlog: %d left of 40", s.SpoolQueued)
	}

	// Time runs: one token per reading.
	clk.set(frozen, time.Second)
	for len(got) < 40 {
		record(w.Any())
	}
	first := inv.Seq + 1 // nothing was stamped between the inventory and the outage
	for i, m := range got {
		h := m.Header()
		if msgLabel(m) != made[i] || h.Seq != first+uint64(i) || !h.TS.Equal(start.Add(time.Duration(i)*time.Second)) {
			t.Fatalf("backlog message %d: %s seq %d ts %v; want %s seq %d ts %v",
				i, msgLabel(m), h.Seq, h.TS, made[i], first+uint64(i), start.Add(time.Duration(i)*time.Second))
		}
		if m.Health != nil && m.Health.Dropped != nil {
			t.Errorf("report %s says %+v dropped; nothing was", msgLabel(m), m.Health.Dropped)
		}
	}
	if last := first + 39; birth.Seq != last+1 {
		t.Errorf("birth seq %d, want %d: the backlog was stamped when made", birth.Seq, last+1)
	}
	wiretest.Eventually(t, "backlog acknowledged", func() bool { s := c.Stats(); return s.Resent == 40 && s.SpoolQueued == 0 })
	if s := c.Stats(); s.SpoolBytes != 0 || s.DroppedHealth+s.DroppedEvents != 0 || s.SpoolCorrupt != 0 || s.SpoolErrors != 0 {
		t.Errorf("stats after the backlog: %+v", s)
	}
}

// TestSpoolQuota: with more made during an outage than the quota holds,
// the oldest health reports are dropped and every event is kept; the next
// report tells the hub how many.
func TestSpoolQuota(t *testing.T) {
	broker := testenv.Mosquitto(t)
	w := wiretest.Watch(t, broker.URL(), "agent-s2")
	const quota = 16 << 10
	c, _ := startClient(t, broker.URL(), "agent-s2", func(cfg *Config) {
		cfg.SpoolDir, cfg.SpoolBytes, cfg.ResendRate = t.TempDir(), quota, 1e6
	})
	outage(t, broker, c)

	const reports, events = 10, 20
	for i := range reports {
		c.PublishHealth(healthLines(i, 20)) // about 2 KB each
		for j := range events / reports {
			c.PublishEvent(wire.Event{Device: "cam-1", Type: wire.EventTriggered, Detail: strconv.Itoa(i*10 + j), At: time.Now()})
		}
	}
	s := c.Stats()
	kept := reports - int(s.DroppedHealth)
	if s.DroppedEvents != 0 || kept < 1 || kept >= reports || s.SpoolQueued != kept+events || s.SpoolBytes > quota {
		t.Fatalf("stats while down: %+v; want some reports dropped, no events, under %d bytes", s, quota)
	}

	broker.Restart()
	birth := w.Next(wire.ChannelState, func(m wire.Message) bool { return m.State.State == wire.AgentOnline && m.State.Conn == 2 }).State
	var gotHealth, gotEvents []string
	for len(gotHealth)+len(gotEvents) < kept+events {
		m := w.Any()
		switch {
		case m.Health != nil:
			gotHealth = append(gotHealth, msgLabel(m))
		case m.Event != nil:
			gotEvents = append(gotEvents, msgLabel(m))
		}
	}
	var wantHealth, wantEvents []string
	for i := reports - kept; i < reports; i++ {
		wantHealth = append(wantHealth, "h:"+strconv.Itoa(i))
	}
	for i := range reports {
		for j := range events / reports {
			wantEvents = append(wantEvents, "e:"+strconv.Itoa(i*10+j))
		}
	}
	if !slices.Equal(gotHealth, wantHealth) || !slices.Equal(gotEvents, wantEvents) {
		t.Errorf("received reports %v and events %v; want the newest reports %v and every event", gotHealth, gotEvents, wantEvents)
	}

	c.PublishHealth(healthLines(99, 1))
	h := w.Next(wire.ChannelHealth, func(m wire.Message) bool { return m.Health.Seq > birth.Seq }).Health
	if want := (wire.Dropped{Health: uint64(reports - kept)}); h.Dropped == nil || *h.Dropped != want {
		t.Errorf("the report after the outage says dropped %+v, want %+v", h.Dropped, want)
	}
}

// fullDisk is a disk with room for a fixed number of bytes: a write
// beyond it writes what fits and fails with ENOSPC, as a full file system
// does.
type fullDisk struct {
	mu   sync.Mutex
	free int64
}

type fullDiskFile struct {
	*os.File
	disk *fullDisk
}

func (d *fullDisk) create(path string) (spoolFile, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	return fullDiskFile{File: f, disk: d}, nil
}

func (f fullDiskFile) WriteAt(p []byte, off int64) (int, error) {
	f.disk.mu.Lock()
	room := min(f.disk.free, int64(len(p)))
	f.disk.free -= room
	f.disk.mu.Unlock()
	n, err := f.File.WriteAt(p[:room], off)
	if err == nil && n < len(p) {
		err = &os.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
	}
	return n, err
}

// TestSpoolDiskFull: when the disk fills up, writes fail, are counted,
// and reports wait in memory instead, dropped by the queue's policy; the
// agent keeps running and keeps sending, live messages included.
func TestSpoolDiskFull(t *testing.T) {
	broker := testenv.Mosquitto(t)
	w := wiretest.Watch(t, broker.URL(), "agent-s3")
	disk := &fullDisk{free: 4 << 10}
	c, _ := startClient(t, broker.URL(), "agent-s3", func(cfg *Config) {
		cfg.SpoolDir, cfg.SpoolBytes, cfg.ResendRate = t.TempDir(), 1<<20, 1e6
		cfg.QueueSize = 5
		cfg.createSegment = disk.create
	})
	outage(t, broker, c)

	const n = 50
	for i := range n {
		c.PublishEvent(wire.Event{Device: "cam-1", Type: wire.EventTriggered, Detail: strconv.Itoa(i), At: time.Now()})
	}
	s := c.Stats()
	spooled := int(s.Spooled)
	if spooled == 0 || spooled >= n || s.SpoolErrors == 0 || s.Queued != 5 || int(s.DroppedEvents) != n-spooled-5 {
		t.Fatalf("stats with a full disk: %+v; want some spooled, write errors, 5 in memory, the rest dropped", s)
	}

	broker.Restart()
	birth := w.Next(wire.ChannelState, func(m wire.Message) bool { return m.State.State == wire.AgentOnline && m.State.Conn == 2 }).State
	// What the disk held comes out, and what memory held; nothing twice.
	got := make(map[string]bool)
	for len(got) < spooled+5 {
		m := w.Next(wire.ChannelEvents, nil)
		if got[m.Event.Detail] {
			t.Fatalf("event %s twice", m.Event.Detail)
		}
		got[m.Event.Detail] = true
	}
	for i := range spooled {
		if !got[strconv.Itoa(i)] {
			t.Errorf("spooled event %d lost", i)
		}
	}
	for i := n - 5; i < n; i++ {
		if !got[strconv.Itoa(i)] {
			t.Errorf("event %d from memory lost", i)
		}
	}

	// Still running: live signalling and reports go out, and the report
	// counts the edge's losses.
	c.PublishLive(wire.Live{Session: "ls-1", Device: "cam-1", Type: wire.LiveAnswer, SDP: "v=0\r\n"})
	if l := w.Next(wire.ChannelLive, nil).Live; l.Seq <= birth.Seq || l.Session != "ls-1" {
		t.Errorf("live %+v", l)
	}
	c.PublishHealth(healthLines(0, 1))
	h := w.Next(wire.ChannelHealth, nil).Health
	if want := (wire.Dropped{Events: uint64(n - spooled - 5)}); h.Dropped == nil || *h.Dropped != want {
		t.Errorf("health says dropped %+v, want %+v", h.Dropped, want)
	}
}

// TestSpoolDirUnusable: a spool directory that cannot be made is counted
// and logged, and the agent runs on with its memory queue.
func TestSpoolDirUnusable(t *testing.T) {
	broker := testenv.Mosquitto(t)
	w := wiretest.Watch(t, broker.URL(), "agent-s4")
	notDir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	c, _ := startClient(t, broker.URL(), "agent-s4", func(cfg *Config) {
		cfg.SpoolDir, cfg.SpoolBytes = filepath.Join(notDir, "spool"), 1<<20
	})
	w.Next(wire.ChannelInventory, nil)
	outage(t, broker, c)
	c.PublishEvent(wire.Event{Device: "cam-1", Type: wire.EventTriggered, Detail: "x", At: time.Now()})
	if s := c.Stats(); s.SpoolErrors != 1 || s.Spooled != 0 || s.Queued != 1 {
		t.Fatalf("stats %+v; want one spool error and the event in memory", s)
	}
	broker.Restart()
	if e := w.Next(wire.ChannelEvents, nil).Event; e.Detail != "x" {
		t.Errorf("event %+v", e)
	}
}

// TestSpoolStaleMessages: a live message made while disconnected is
// dropped at once; a snapshot that waited longer than a minute is dropped
// when its turn comes; both counted.
func TestSpoolStaleMessages(t *testing.T) {
	broker := testenv.Mosquitto(t)
	w := wiretest.Watch(t, broker.URL(), "agent-s5")
	start := time.Now().Add(-time.Hour)
	clk := newTestClock(start)
	c, _ := startClient(t, broker.URL(), "agent-s5", func(cfg *Config) {
		cfg.SpoolDir, cfg.SpoolBytes, cfg.ResendRate = t.TempDir(), 1<<20, 1e6
		cfg.now = clk.now
	})
	outage(t, broker, c)

	c.PublishLive(wire.Live{Session: "ls-1", Device: "cam-1", Type: wire.LiveAnswer, SDP: "v=0\r\n"})
	jpeg := []byte{0xFF, 0xD8, 0xFF, 0xE0}
	c.PublishSnapshot(wire.Snapshot{Request: "old", Device: "cam-1", JPEG: jpeg})
	clk.set(start.Add(2*time.Minute), 0)
	c.PublishSnapshot(wire.Snapshot{Request: "new", Device: "cam-1", JPEG: jpeg})
	c.PublishEvent(wire.Event{Device: "cam-1", Type: wire.EventTriggered, Detail: "last", At: start})
	if s := c.Stats(); s.DroppedLive != 1 || s.DroppedEvents != 1 || s.Spooled != 3 {
		t.Fatalf("stats while down: %+v; want the live message dropped, the rest spooled", s)
	}

	broker.Restart()
	var got []string
	for {
		m := w.Any()
		switch {
		case m.Live != nil:
			t.Errorf("stale live message sent: %+v", m.Live)
		case m.Snapshot != nil:
			got = append(got, m.Snapshot.Request)
		}
		if m.Event != nil && m.Event.Detail == "last" {
			break
		}
	}
	if !slices.Equal(got, []string{"new"}) {
		t.Errorf("snapshots %v, want only the one made within the minute", got)
	}
	if s := c.Stats(); s.DroppedSnapshots != 1 || s.DroppedLive != 1 || s.DroppedEvents != 2 {
		t.Errorf("stats %+v; want one snapshot and one live message dropped", s)
	}
}

// TestSpoolEarlierRunDiscarded: what a run that died left in the spool
// is counted and never sent: its boot is over.
func TestSpoolEarlierRunDiscarded(t *testing.T) {
	broker := testenv.Mosquitto(t)
	dir := t.TempDir()
	var counters spoolCounters
	dead, _, err := openSpool(spoolOptions{root: filepath.Join(dir, "agent-s6"), quota: 1 << 20, counters: &counters, drop: func(kind, uint64, string) {}})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		if err := dead.push(spoolItem(kindEvent, i, 10)); err != nil {
			t.Fatal(err)
		}
	}
	dead.lock.Close() // the process died

	c, _ := startClient(t, broker.URL(), "agent-s6", func(cfg *Config) { cfg.SpoolDir, cfg.SpoolBytes = dir, 1<<20 })
	wiretest.Eventually(t, "connected", func() bool { return c.Stats().Published >= 2 })
	if s := c.Stats(); s.SpoolStale != 3 || s.SpoolQueued != 0 || s.Spooled != 0 || s.SpoolErrors != 0 {
		t.Errorf("stats %+v; want 3 stale, nothing waiting", s)
	}
	if _, err := os.Stat(dead.dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the dead run's directory is still there: %v", err)
	}
}

// The tests below drive the spool directly.

func testSpool(t *testing.T, root string, quota, segment int64) (*spool, map[kind]uint64, staleRun) {
	t.Helper()
	drops := make(map[kind]uint64)
	var counters spoolCounters
	sp, stale, err := openSpool(spoolOptions{root: root, quota: quota, segment: segment, counters: &counters,
		drop: func(k kind, n uint64, _ string) { drops[k] += n }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = sp.close() })
	return sp, drops, stale
}

// spoolItem is a report of kind k with seq n and size bytes of message.
func spoolItem(k kind, n, size int) item {
	return item{kind: k, made: time.Unix(0, int64(n)), parts: []part{{seq: uint64(n), data: []byte(strings.Repeat("x", size))}}}
}

func drainSpool(sp *spool) []string {
	var got []string
	for it, ok := sp.peek(); ok; it, ok = sp.peek() {
		got = append(got, label(it))
		sp.remove(it)
	}
	return got
}

func TestSpoolPolicy(t *testing.T) {
	const rec = recordHeader + bodyFixed + partFixed + 100 // a 100-byte message
	h := func(n int) item { return spoolItem(kindHealth, n, 100) }
	e := func(n int) item { return spoolItem(kindEvent, n, 100) }
	tests := []struct {
		name         string
		quota        int64
		push         []item
		want         []string
		dropH, dropE uint64
	}{
		{"merged by seq", 10 * rec, []item{h(1), e(2), e(3), h(4), e(5)}, []string{"h:1", "e:2", "e:3", "h:4", "e:5"}, 0, 0},
		{"full: the oldest report goes", 3 * rec, []item{h(1), e(2), h(3), e(4)}, []string{"e:2", "h:3", "e:4"}, 1, 0},
		{"full: reports go before events", 3 * rec, []item{h(1), h(2), e(3), e(4), e(5)}, []string{"e:3", "e:4", "e:5"}, 2, 0},
		{"a report does not displace events", 2 * rec, []item{e(1), e(2), h(3)}, []string{"e:1", "e:2"}, 1, 0},
		{"only events: the oldest goes", 2 * rec, []item{e(1), e(2), e(3)}, []string{"e:2", "e:3"}, 0, 1},
		{"larger than the quota", rec - 1, []item{e(1), h(2)}, nil, 1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sp, drops, _ := testSpool(t, t.TempDir(), tt.quota, 2*rec)
			for _, it := range tt.push {
				if err := sp.push(it); err != nil {
					t.Fatal(err)
				}
			}
			if n, b := sp.size(); n != len(tt.want) || b != int64(len(tt.want))*rec {
				t.Errorf("size %d items, %d bytes; want %d, %d", n, b, len(tt.want), len(tt.want)*rec)
			}
			if got := drainSpool(sp); !slices.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
			if drops[kindHealth] != tt.dropH || drops[kindEvent] != tt.dropE {
				t.Errorf("dropped %d health, %d events; want %d, %d", drops[kindHealth], drops[kindEvent], tt.dropH, tt.dropE)
			}
			if n, b := sp.size(); n != 0 || b != 0 {
				t.Errorf("after draining: %d items, %d bytes", n, b)
			}
			segs, _ := filepath.Glob(filepath.Join(sp.dir, "*.seg"))
			if len(segs) > 2 {
				t.Errorf("consumed segments left on disk: %v", segs)
			}
		})
	}
}

// TestSpoolCorruptSegment: a damaged record loses the rest of its segment,
// counted; the segments after it are read as usual and the spool goes on.
func TestSpoolCorruptSegment(t *testing.T) {
	const rec = recordHeader + bodyFixed + partFixed + 100
	sp, drops, _ := testSpool(t, t.TempDir(), 1<<20, 3*rec) // three records per segment
	for i := 1; i <= 9; i++ {
		if err := sp.push(spoolItem(kindEvent, i, 100)); err != nil {
			t.Fatal(err)
		}
	}
	segs, _ := filepath.Glob(filepath.Join(sp.dir, "events-*.seg"))
	slices.Sort(segs)
	if len(segs) != 3 {
		t.Fatalf("segments %v, want 3", segs)
	}
	// Flip a byte in the second record of the second segment.
	f, err := os.OpenFile(segs[1], os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{0xAA}, rec+recordHeader+bodyFixed+partFixed+10); err != nil {
		t.Fatal(err)
	}
	f.Close()

	if got, want := drainSpool(sp), []string{"e:1", "e:2", "e:3", "e:4", "e:7", "e:8", "e:9"}; !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if c := sp.opts.counters.corrupt.Load(); c != 2 || drops[kindEvent] != 2 {
		t.Errorf("%d corrupt, %d events dropped; want 2, 2", c, drops[kindEvent])
	}
	if n, b := sp.size(); n != 0 || b != 0 {
		t.Errorf("after draining: %d items, %d bytes", n, b)
	}
	if err := sp.push(spoolItem(kindEvent, 10, 100)); err != nil {
		t.Fatal(err)
	}
	if got := drainSpool(sp); !slices.Equal(got, []string{"e:10"}) {
		t.Errorf("after the damage: %v", got)
	}
}

// TestSpoolEarlierRun: what a run that died left behind, its last record
// torn by the crash, is counted and discarded by the next run; the
// directory of a run still alive is left alone.
func TestSpoolEarlierRun(t *testing.T) {
	root := t.TempDir()
	alive, _, _ := testSpool(t, root, 1<<20, 0)
	var counters spoolCounters
	dead, _, err := openSpool(spoolOptions{root: root, quota: 1 << 20, counters: &counters, drop: func(kind, uint64, string) {}})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 5; i++ {
		if err := dead.push(spoolItem(kindEvent, i, 100)); err != nil {
			t.Fatal(err)
		}
	}
	for i := 6; i <= 7; i++ {
		if err := dead.push(spoolItem(kindHealth, i, 100)); err != nil {
			t.Fatal(err)
		}
	}
	// The crash: the last event's record cut short, the lock released.
	segs, _ := filepath.Glob(filepath.Join(dead.dir, "events-*.seg"))
	info, err := os.Stat(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(segs[0], info.Size()-20); err != nil {
		t.Fatal(err)
	}
	dead.lock.Close()

	next, _, stale := testSpool(t, root, 1<<20, 0)
	if stale != (staleRun{health: 2, events: 4, corrupt: 1, inUse: 1}) {
		t.Errorf("stale %+v; want 2 health, 4 events, 1 corrupt, 1 run in use", stale)
	}
	for dir, want := range map[string]bool{dead.dir: false, alive.dir: true, next.dir: true} {
		if _, err := os.Stat(dir); (err == nil) != want {
			t.Errorf("%s exists: %v, want %v", dir, err == nil, want)
		}
	}
}

// TestBucket: the backlog's pace, on a clock the test sets.
func TestBucket(t *testing.T) {
	t0 := time.Unix(1e9, 0)
	b := bucket{rate: 2}
	for i := range 2 { // a second's worth at once
		if wait := b.take(t0); wait != 0 {
			t.Fatalf("take %d: wait %v", i, wait)
		}
	}
	if wait := b.take(t0); wait <= 0 || wait > time.Second {
		t.Fatalf("empty bucket: wait %v, want up to half a second", wait)
	}
	if wait := b.take(t0.Add(500 * time.Millisecond)); wait != 0 {
		t.Fatalf("after half a second: wait %v", wait)
	}
	if wait := b.take(t0.Add(-time.Hour)); wait <= 0 {
		t.Fatalf("a clock stepping back refilled the bucket")
	}
	if wait := b.take(t0.Add(time.Hour)); wait != 0 {
		t.Fatalf("after an hour: wait %v", wait)
	}
	if wait := b.take(t0.Add(time.Hour)); wait != 0 {
		t.Fatalf("burst of two after an hour: wait %v", wait)
	}
	if wait := b.take(t0.Add(time.Hour)); wait == 0 {
		t.Fatalf("burst larger than a second's worth")
	}
}

func FuzzDecodeRecord(f *testing.F) {
	for _, it := range []item{
		spoolItem(kindEvent, 1, 10),
		spoolItem(kindSnapshot, 7, 0),
		{kind: kindHealth, made: time.Unix(5, 6), epoch: 3, tries: 2, parts: []part{{seq: 8, data: []byte(`{"a":1}`)}, {seq: 9, data: []byte(`{}`)}}},
	} {
		rec := encodeRecord(nil, it)
		f.Add(rec)
		f.Add(rec[:len(rec)-1])
		f.Add(append(rec, rec...))
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		it, n, err := decodeRecord(data)
		if err != nil {
			if !errors.Is(err, errCorrupt) {
				t.Fatalf("error %v is not errCorrupt", err)
			}
			return
		}
		if n > len(data) || int64(n) != recordSize(it) {
			t.Fatalf("took %d of %d bytes; the item encodes to %d", n, len(data), recordSize(it))
		}
		if again := encodeRecord(nil, it); string(again) != string(data[:n]) {
			t.Fatalf("re-encoded record differs:\n%x\n%x", again, data[:n])
		}
	})
}
