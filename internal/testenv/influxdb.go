package testenv

import (
	"context"
	"debug/buildinfo"
	"fmt"
	"go/build"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	influxdb2 "github.com/influxdata/influxdb-client-go/v2"
)

const (
	influxStartTimeout = 60 * time.Second
	influxDatabase     = "citywatch"
	influxRP           = "autogen"
	// InfluxDB 1.8 ignores the org; the v2 client only needs it non-empty.
	influxOrg = "citywatch"
	// With auth off 1.8 ignores credentials; "user:password" is the form it
	// takes when auth is on, so code under test sees a realistic token.
	influxToken = "citywatch:citywatch"
)

// Influx is a private InfluxDB 1.8 server started by [InfluxDB]. Its methods
// that can fail the test (Restart, Query, Client) must be called from the
// test goroutine.
type Influx struct {
	logf     func(format string, args ...any)
	fatalf   func(format string, args ...any) // Restart's failure
	deadline func() (time.Time, bool)         // the test's, or nil
	bin      string
	dir      string
	conf     string
	log      *tailBuffer
	httpPort int // fixed once InfluxDB returns
	version  string
	nice     int // the server's CPU priority, as nice(1) takes it

	mu   sync.Mutex // guards proc
	proc *process
}

// InfluxDB starts InfluxDB OSS 1.8 with Flux enabled and auth disabled, its
// HTTP API and RPC listener on free 127.0.0.1 ports and all data in
// t.TempDir(), and creates database "citywatch" (retention policy
// "autogen"). Write with the v2 client to [Influx.Bucket] and read back with
// [Influx.Query]. It stops the server when the test ends. The binary is
// $CITYWATCH_INFLUXD, `influxd` on PATH, or $(go env GOPATH)/bin/influxd.
func InfluxDB(t testing.TB, opts ...InfluxOption) *Influx {
	t.Helper()
	in := &Influx{logf: t.Logf, fatalf: t.Fatalf, deadline: func() (time.Time, bool) { return testDeadline(t) },
		bin: lookBin(t, "influxd", "CITYWATCH_INFLUXD", gopathBins("influxd")...), dir: t.TempDir()}
	for _, o := range opts {
		o(in)
	}
	t.Cleanup(func() {
		in.Stop()
		if t.Failed() {
			t.Logf("testenv: influxd log (%s):\n%s", in.URL(), in.log.String())
		}
	})
	if err := in.launch(); err != nil {
		t.Fatal(err)
	}
	return in
}

// InfluxOption adjusts how [InfluxDB] runs the server.
type InfluxOption func(*Influx)

// InfluxNice runs the server at CPU priority n (nice(1); 1 to 19 is lower
// than normal). A benchmark of the hub on a small machine uses it so that
// InfluxDB, which in a deployment has a host of its own, takes the cores
// the hub leaves rather than stalling the hub in its compactions; it must
// still keep up, which the benchmark checks by counting what landed.
func InfluxNice(n int) InfluxOption { return func(in *Influx) { in.nice = n } }

// StartInfluxDB is [InfluxDB] for a program (the demo): the same server,
// its data in dir, its progress logged through logf. The caller calls
// Stop. An error wraps [ErrNotInstalled] when there is no influxd.
func StartInfluxDB(dir string, logf func(format string, args ...any)) (*Influx, error) {
	bin, err := findBin("influxd", "CITYWATCH_INFLUXD", gopathBins("influxd")...)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("testenv: influxd: %w", err)
	}
	in := &Influx{logf: logf, fatalf: logf, bin: bin, dir: dir}
	if err := in.launch(); err != nil {
		in.Stop()
		return nil, err
	}
	return in, nil
}

// launch starts the server on free ports and creates the database.
func (in *Influx) launch() error {
	in.log = newTailBuffer(256 << 10)
	in.conf = filepath.Join(in.dir, "influxdb.conf")
	in.version = moduleVersion(in.bin)
	var err error
	for range portAttempts {
		var ports []int
		if ports, err = listenFree(2); err != nil {
			return err
		}
		in.httpPort = ports[0]
		if err = os.WriteFile(in.conf, []byte(in.config(ports[1])), 0o600); err != nil {
			return fmt.Errorf("testenv: influxd: %w", err)
		}
		if err = in.start(); err == nil || !addrInUse(in.log) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("testenv: influxd: %v\n%s", err, in.log.String())
	}
	if in.version != "" && !strings.HasPrefix(in.version, "1.") {
		return fmt.Errorf("testenv: %s is InfluxDB %s; citywatch needs 1.8.10: %s", in.bin, in.version, installHint)
	}
	if err := in.influxQL("CREATE DATABASE " + influxDatabase); err != nil {
		return fmt.Errorf("testenv: influxd: %v\n%s", err, in.log.String())
	}
	return nil
}

// gopathBins lists where `go install` puts name: $GOPATH/bin for each GOPATH
// entry, or, if none has it, the GOPATH that `go env` reports (it may have
// been set with `go env -w`).
func gopathBins(name string) []string {
	var paths []string
	for _, p := range filepath.SplitList(build.Default.GOPATH) {
		paths = append(paths, filepath.Join(p, "bin", name))
		if isExecutable(paths[len(paths)-1]) {
			return paths
		}
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		for _, p := range filepath.SplitList(strings.TrimSpace(string(out))) {
			paths = append(paths, filepath.Join(p, "bin", name))
		}
	}
	return paths
}

func (in *Influx) config(rpcPort int) string {
	return fmt.Sprintf(`# written by internal/testenv
reporting-disabled = true
bind-address = "127.0.0.1:%[2]d"

[meta]
  dir = "%[1]s/meta"
  logging-enabled = false

[data]
  dir = "%[1]s/data"
  wal-dir = "%[1]s/wal"
  query-log-enabled = false

[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:%[3]d"
  auth-enabled = false
  flux-enabled = true
  flux-log-enabled = false
  log-enabled = false
  pprof-enabled = false

[continuous_queries]
  log-enabled = false

[logging]
  level = "warn"
  suppress-logo = true
`, in.dir, rpcPort, in.httpPort)
}

// influxEnv is the environment without INFLUXDB_* variables, which influxd
// reads as config overrides and would leak a developer's settings in.
func influxEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "INFLUXDB_") {
			env = append(env, kv)
		}
	}
	return env
}

func (in *Influx) start() error {
	start := time.Now()
	bin, args := in.bin, []string{"run", "-config", in.conf}
	if in.nice != 0 {
		// nice execs influxd in its own process: its pid and signals are influxd's.
		bin, args = "nice", append([]string{"-n", strconv.Itoa(in.nice), in.bin}, args...)
	}
	p, err := startProcess("influxd", bin, args, influxEnv(), in.dir, in.log)
	if err != nil {
		return err
	}
	ctx, cancel := withDeadline(influxStartTimeout, in.deadline)
	defer cancel()
	if err := p.waitReady(ctx, in.ping); err != nil {
		_ = p.stop(stopGrace)
		return err
	}
	in.mu.Lock()
	in.proc = p
	in.mu.Unlock()
	in.logf("testenv: influxd %s ready on %s in %v", in.version, in.URL(), time.Since(start).Round(time.Millisecond))
	return nil
}

// ping succeeds when GET /ping answers 204, and records the server version.
func (in *Influx) ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, in.URL()+"/ping", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("GET /ping: %s", resp.Status)
	}
	if v := resp.Header.Get("X-Influxdb-Version"); v != "" && v != "unknown" {
		in.version = v
	}
	return nil
}

// moduleVersion is the InfluxDB module version recorded in a binary built by
// `go install` ("1.8.10"), which reports "unknown" over HTTP unless built with
// -ldflags; "" if the binary has no such build info.
func moduleVersion(bin string) string {
	bi, err := buildinfo.ReadFile(bin)
	if err != nil || bi.Main.Path != "github.com/influxdata/influxdb" {
		return ""
	}
	return strings.TrimPrefix(bi.Main.Version, "v")
}

// influxQL runs one InfluxQL statement through the 1.x /query endpoint.
func (in *Influx) influxQL(stmt string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, in.URL()+"/query",
		strings.NewReader(url.Values{"q": {stmt}}.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", stmt, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	// Statement errors come back as 200 with an "error" field in the result.
	if resp.StatusCode != http.StatusOK || strings.Contains(string(body), `"error"`) {
		return fmt.Errorf("%s: %s: %s", stmt, resp.Status, body)
	}
	return nil
}

// URL is the HTTP API base, http://127.0.0.1:PORT, for influxdb2.NewClient.
func (in *Influx) URL() string {
	return "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(in.httpPort))
}

// Bucket is "citywatch/autogen": InfluxDB 1.8's v2-compatible API names a
// bucket as database/retention-policy.
func (in *Influx) Bucket() string { return influxDatabase + "/" + influxRP }

// Database is the 1.x database name, "citywatch".
func (in *Influx) Database() string { return influxDatabase }

// Org is the organisation to pass to the v2 client; 1.8 ignores it.
func (in *Influx) Org() string { return influxOrg }

// Token is the token to pass to the v2 client. Auth is off, so 1.8 accepts
// any value (an empty one too); this one has the user:password form.
func (in *Influx) Token() string { return influxToken }

// Client returns a v2 client for this server, closed when the test ends.
func (in *Influx) Client(t testing.TB) influxdb2.Client {
	t.Helper()
	c := influxdb2.NewClient(in.URL(), in.Token())
	t.Cleanup(c.Close)
	return c
}

// Query runs a Flux query through the v2 client's QueryAPI and returns every
// record's values (columns such as _measurement, _field, _value, _time and
// tags), failing the test on error.
func (in *Influx) Query(t testing.TB, flux string) []map[string]any {
	t.Helper()
	c := influxdb2.NewClient(in.URL(), in.Token())
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := c.QueryAPI(in.Org()).Query(ctx, flux)
	if err != nil {
		t.Fatalf("testenv: flux query: %v\nquery: %s", err, flux)
	}
	defer res.Close()
	var rows []map[string]any
	for res.Next() {
		rows = append(rows, maps.Clone(res.Record().Values()))
	}
	if err := res.Err(); err != nil {
		t.Fatalf("testenv: flux query: %v\nquery: %s", err, flux)
	}
	return rows
}

// PID is the running server's process id (0 when stopped).
func (in *Influx) PID() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.proc == nil || in.proc.cmd.Process == nil {
		return 0
	}
	return in.proc.cmd.Process.Pid
}

// Stop shuts the server down and waits for it to exit, for tests of how
// writers cope with an outage. Stopping a stopped server does nothing.
func (in *Influx) Stop() {
	in.mu.Lock()
	p := in.proc
	in.proc = nil
	in.mu.Unlock()
	if p == nil {
		return
	}
	if err := p.stop(stopGrace); err != nil {
		in.logf("%v", err)
	}
}

// Restart stops the server and starts it again on the same port with the
// same data.
func (in *Influx) Restart() {
	in.Stop()
	if err := in.start(); err != nil {
		in.fatalf("testenv: influxd restart: %v\n%s", err, in.log.String())
	}
}
