package testenv_test

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/citywatch/citywatch/internal/testenv"
)

// InfluxNice lowers the priority of every thread of influxd, not of a
// wrapper around it.
func TestInfluxNice(t *testing.T) {
	in := testenv.InfluxDB(t, testenv.InfluxNice(10))
	pid := in.PID()
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil || strings.TrimSpace(string(comm)) != "influxd" {
		t.Fatalf("pid %d is %q (%v), want influxd", pid, comm, err)
	}
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil || len(tasks) < 2 {
		t.Fatalf("threads of influxd: %d, %v", len(tasks), err)
	}
	for _, task := range tasks {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, task.Name()))
		if err != nil {
			t.Fatal(err)
		}
		// After "(comm)" the fields run from state (3); nice is field 19.
		_, rest, _ := strings.Cut(string(stat), ") ")
		if f := strings.Fields(rest); len(f) < 17 || f[16] != "10" {
			t.Errorf("thread %s: nice %v, want 10", task.Name(), f[16:17])
		}
	}
}
