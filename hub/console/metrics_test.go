package console

import (
	"bufio"
	"io"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

var (
	sampleLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? (\S+)$`)
	helpLine   = regexp.MustCompile(`^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) \S.*$`)
	typeLine   = regexp.MustCompile(`^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$`)
)

// parseExposition checks text against the Prometheus text format (as much
// of it as a registry without histograms produces) and returns the samples
// by series.
func parseExposition(t *testing.T, r io.Reader) map[string]float64 {
	t.Helper()
	samples := map[string]float64{}
	helped, typed := map[string]bool{}, map[string]string{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "# HELP "):
			m := helpLine.FindStringSubmatch(line)
			if m == nil || helped[m[1]] {
				t.Fatalf("line %d: bad or repeated HELP: %q", n, line)
			}
			helped[m[1]] = true
		case strings.HasPrefix(line, "# TYPE "):
			m := typeLine.FindStringSubmatch(line)
			if m == nil || typed[m[1]] != "" {
				t.Fatalf("line %d: bad or repeated TYPE: %q", n, line)
			}
			typed[m[1]] = m[2]
		default:
			m := sampleLine.FindStringSubmatch(line)
			if m == nil {
				t.Fatalf("line %d: not a sample: %q", n, line)
			}
			if !helped[m[1]] || typed[m[1]] == "" {
				t.Fatalf("line %d: sample of %s before its HELP and TYPE", n, m[1])
			}
			v, err := strconv.ParseFloat(m[3], 64)
			if err != nil {
				t.Fatalf("line %d: value: %v", n, err)
			}
			if typed[m[1]] == "counter" && (v < 0 || !strings.HasSuffix(m[1], "_total")) {
				t.Errorf("line %d: counter %s = %v", n, m[1], v)
			}
			samples[m[1]+m[2]] = v
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return samples
}

func TestMetricsExposition(t *testing.T) {
	deps := testDeps()
	// Other components register on the same registry; /metrics shows theirs too.
	deps.Metrics.CounterVec("citywatch_ingest_rejects_total", "Messages rejected, by reason.", "reason").With("malformed").Add(2)
	s := mustNew(t, Config{}, deps)
	base, _ := running(t, s)

	readHello(t, dial(t, base, nil))
	for _, p := range []string{"/api/summary", "/api/devices?status=nope", "/api/devices/nope"} {
		res, err := adminGet(base + p)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
	}

	res, err := adminGet(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("Content-Type = %q", ct)
	}
	samples := parseExposition(t, res.Body)
	const present = -1 // any value; the writer counts a message after the client may have read it
	for series, want := range map[string]float64{
		"citywatch_ws_clients":                                                    1,
		"citywatch_ws_dropped_clients_total":                                      0,
		"citywatch_ws_messages_sent_total":                                        present,
		`citywatch_http_requests_total{route="GET /api/summary",code="200"}`:      1,
		`citywatch_http_requests_total{route="GET /api/devices",code="400"}`:      1,
		`citywatch_http_requests_total{route="GET /api/devices/{id}",code="404"}`: 1,
		`citywatch_ingest_rejects_total{reason="malformed"}`:                      2,
	} {
		got, ok := samples[series]
		if !ok || (want != present && got != want) {
			t.Errorf("%s = %v (present %v), want %v", series, got, ok, want)
		}
	}
}
