package history

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"reflect"
	"testing"
	"time"

	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/wire"
)

// crashEnv makes the test binary the child TestCrash kills: it writes to
// the history at that path and never stops.
const crashEnv = "CITYWATCH_HISTORY_CRASH_DB"

const crashDevices = 500

// TestCrash kills a process writing to the history with SIGKILL, in the
// middle of its writes, and finds everything it committed before.
func TestCrash(t *testing.T) {
	if path := os.Getenv(crashEnv); path != "" {
		crashChild(t, path)
		return
	}
	path := tempDB(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrash$")
	cmd.Env = append(os.Environ(), crashEnv+"="+path)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "committed\n" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("the child said %q (%v)", line, err)
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	if err := cmd.Wait(); err == nil {
		t.Fatal("the child exited by itself")
	}

	h := open(t, path, &clock{now: at(100)}, Options{})
	ids := make([]string, crashDevices)
	for i := range ids {
		ids[i] = fmt.Sprintf("cam-%d", i)
	}
	tl, err := h.Timelines(context.Background(), at(0), at(2), ids)
	if err != nil {
		t.Fatal(err)
	}
	want := []fleet.StatusSpan{{From: at(0), To: at(1), Status: wire.StatusOnline}, {From: at(1), To: at(2), Status: wire.StatusOffline}}
	if len(tl) != crashDevices {
		t.Fatalf("%d devices after the crash, want %d", len(tl), crashDevices)
	}
	for _, id := range ids {
		if !reflect.DeepEqual(tl[id], want) {
			t.Fatalf("%s after the crash: %v, want %v", id, tl[id], want)
		}
	}
	var ok string
	if err := h.rdb.QueryRow(`PRAGMA integrity_check`).Scan(&ok); err != nil || ok != "ok" {
		t.Errorf("integrity check: %q (%v)", ok, err)
	}
}

// crashChild commits devices online at 00:00 (Seed) and offline at 01:00
// (Record, then the queue written), records it is alive at 02:00, says
// so, and goes on writing until it is killed.
func crashChild(t *testing.T, path string) {
	h := open(t, path, &clock{now: at(2)}, Options{})
	devs := make([]*fleet.Device, crashDevices)
	var ts []fleet.DeviceTransition
	for i := range devs {
		devs[i] = dev(fmt.Sprintf("cam-%d", i), wire.KindCamera, "A", "s1", "")
		ts = append(ts, tr(devs[i], at(0), wire.StatusOnline))
	}
	seed(t, h, false, ts...)
	for _, d := range devs {
		h.Record(tr(d, at(1), wire.StatusOffline))
	}
	h.drain(nil)
	h.markAlive() // at 02:00: the time before is known
	fmt.Println("committed")
	for i := 0; ; i++ {
		ts = ts[:0]
		for j, d := range devs {
			st := wire.StatusOnline
			if (i+j)%2 == 0 {
				st = wire.StatusDegraded
			}
			ts = append(ts, tr(d, at(2).Add(time.Duration(i)*time.Second), st))
		}
		seed(t, h, false, ts...)
	}
}
