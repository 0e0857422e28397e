package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// What else ran on the machine during a measurement. A benchmark's
// figures are CPU time and latency on two shared cores: a process that is
// not part of the run (a compiler, the kernel reclaiming memory, a
// service left from an earlier benchmark) changes them without showing in
// any figure of the run. So the benchmarks that are sensitive to it print
// the machine's busy time over their window and the busiest processes
// outside the benchmark's own process tree.

// cpuSnapshot is the CPU time of every process and of the machine at one
// moment.
type cpuSnapshot struct {
	at    time.Time
	busy  time.Duration // the whole machine, every core, not idle nor waiting for I/O
	procs map[int]procTimes
}

// procTimes is what /proc/<pid>/stat says of one process.
type procTimes struct {
	name string
	ppid int
	cpu  time.Duration // user + system
}

// clockTick is USER_HZ, the unit of /proc's CPU times.
const clockTick = time.Second / 100

// snapshotCPU reads the machine's and every process's CPU time.
func snapshotCPU(b testing.TB) cpuSnapshot {
	s := cpuSnapshot{at: time.Now(), procs: map[int]procTimes{}}
	stat, err := os.ReadFile("/proc/stat")
	if err != nil {
		b.Fatal(err)
	}
	line, _, _ := strings.Cut(string(stat), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		b.Fatalf("unexpected /proc/stat: %q", line)
	}
	// user nice system idle iowait irq softirq steal (guest time is in user)
	for _, i := range []int{1, 2, 3, 6, 7, 8} {
		v, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			b.Fatalf("/proc/stat field %d: %v", i, err)
		}
		s.busy += time.Duration(v) * clockTick
	}
	dirs, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		b.Fatal(err)
	}
	for _, d := range dirs {
		pid, _ := strconv.Atoi(filepath.Base(d))
		raw, err := os.ReadFile(d + "/stat")
		if err != nil {
			continue // it ended meanwhile
		}
		if p, ok := parseProcStat(string(raw)); ok {
			s.procs[pid] = p
		}
	}
	return s
}

// parseProcStat reads a process's name, parent and CPU time from the text
// of /proc/<pid>/stat; the name is in parentheses and may hold spaces.
func parseProcStat(stat string) (procTimes, bool) {
	open, end := strings.IndexByte(stat, '('), strings.LastIndexByte(stat, ')')
	if open < 0 || end < open || end+2 > len(stat) {
		return procTimes{}, false
	}
	f := strings.Fields(stat[end+2:])
	if len(f) < 13 {
		return procTimes{}, false
	}
	ppid, err1 := strconv.Atoi(f[1])
	ut, err2 := strconv.ParseInt(f[11], 10, 64)
	st, err3 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return procTimes{}, false
	}
	return procTimes{name: stat[open+1 : end], ppid: ppid, cpu: time.Duration(ut+st) * clockTick}, true
}

// elsewhere says, in one line, how busy the machine was from s0 to s1 and
// which processes outside this test process's tree used the most of it.
func elsewhere(s0, s1 cpuSnapshot) string {
	secs := s1.at.Sub(s0.at).Seconds()
	if secs <= 0 {
		return "no window"
	}
	ours := func(pid int) bool {
		for range 64 { // a bound, in case of a cycle in a changing table
			if pid == os.Getpid() {
				return true
			}
			p, ok := s1.procs[pid]
			if !ok || pid <= 1 {
				return false
			}
			pid = p.ppid
		}
		return false
	}
	type use struct {
		name  string
		cores float64
	}
	var others []use
	var total float64
	for pid, p := range s1.procs {
		if ours(pid) {
			continue
		}
		// A process that started in the window counts from zero.
		d := (p.cpu - s0.procs[pid].cpu).Seconds() / secs
		if s0.procs[pid].name != p.name {
			d = p.cpu.Seconds() / secs
		}
		if d > 0 {
			total += d
			others = append(others, use{fmt.Sprintf("%s[%d]", p.name, pid), d})
		}
	}
	slices.SortFunc(others, func(a, b use) int {
		if a.cores > b.cores {
			return -1
		}
		if a.cores < b.cores {
			return 1
		}
		return strings.Compare(a.name, b.name)
	})
	var top []string
	for _, o := range others[:min(3, len(others))] {
		top = append(top, fmt.Sprintf("%s %.2f", o.name, o.cores))
	}
	if len(top) == 0 {
		top = append(top, "none")
	}
	return fmt.Sprintf("machine %.2f cores busy; outside the benchmark %.2f cores (busiest: %s)",
		(s1.busy-s0.busy).Seconds()/secs, total, strings.Join(top, ", "))
}

func TestParseProcStat(t *testing.T) {
	// A name with a space and a parenthesis, as a process may give itself.
	p, ok := parseProcStat("4242 (go (build) x) S 17 4242 17 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 3 0 1000 0 0")
	if !ok {
		t.Fatal("not parsed")
	}
	if p.name != "go (build) x" || p.ppid != 17 || p.cpu != 3250*time.Millisecond {
		t.Fatalf("got %+v; want name %q, ppid 17, cpu 3.25s", p, "go (build) x")
	}
	for _, bad := range []string{"", "12 (x", "12 (x) S 1 2", "12 (x) S z 1 2 3 4 5 6 7 8 9 10 11 12"} {
		if _, ok := parseProcStat(bad); ok {
			t.Errorf("%q parsed", bad)
		}
	}
}

// elsewhere counts processes outside the test's own tree, new ones from
// zero, and names the busiest.
func TestElsewhere(t *testing.T) {
	self := os.Getpid()
	t0 := time.Now()
	s0 := cpuSnapshot{at: t0, busy: 10 * time.Second, procs: map[int]procTimes{
		self:    {name: "e2e.test", ppid: 1, cpu: time.Second},
		9000001: {name: "hub", ppid: self, cpu: time.Second},
		9000002: {name: "kdamond", ppid: 2, cpu: time.Second},
	}}
	s1 := cpuSnapshot{at: t0.Add(10 * time.Second), busy: 25 * time.Second, procs: map[int]procTimes{
		self:    {name: "e2e.test", ppid: 1, cpu: 5 * time.Second},
		9000001: {name: "hub", ppid: self, cpu: 9 * time.Second},
		9000003: {name: "mosquitto", ppid: 9000001, cpu: 3 * time.Second}, // ours, through the hub
		9000002: {name: "kdamond", ppid: 2, cpu: 2 * time.Second},         // 0.1 cores
		9000004: {name: "cc1", ppid: 9000005, cpu: 4 * time.Second},       // new: 0.4 cores
	}}
	got := elsewhere(s0, s1)
	want := "machine 1.50 cores busy; outside the benchmark 0.50 cores (busiest: cc1[9000004] 0.40, kdamond[9000002] 0.10)"
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	if !strings.Contains(elsewhere(s0, s0), "no window") {
		t.Fatal("an empty window is not said to be one")
	}
}
