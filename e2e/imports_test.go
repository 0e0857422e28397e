package e2e

import (
	"bufio"
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

// TestAgentAndHubStayApart enforces the layering rule: agent code never
// depends on hub code and hub code never on agent code; both share only the
// wire contract. It checks transitive dependencies, so a helper package
// cannot smuggle one side into the other.
func TestAgentAndHubStayApart(t *testing.T) {
	const mod = "github.com/citywatch/citywatch/"
	out, err := exec.Command("go", "list", "-test", "-f", `{{.ImportPath}}{{range .Deps}} {{.}}{{end}}`,
		"../agent/...", "../hub/...", "../wire/...").Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("go list: %v\n%s", err, stderr)
	}
	forbidden := map[string]string{mod + "agent": mod + "hub", mod + "hub": mod + "agent", mod + "wire": ""}
	checked := 0
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		pkg, deps := fields[0], fields[1:]
		for side, other := range forbidden {
			if pkg != side && !strings.HasPrefix(pkg, side+"/") {
				continue
			}
			checked++
			for _, d := range deps {
				if !strings.HasPrefix(d, mod) || d == strings.TrimSuffix(pkg, ".test") {
					continue // a test binary depends on the package it tests
				}
				// wire depends on nothing of ours; each side only on itself,
				// wire and shared test scaffolding.
				if other == "" || d == other || strings.HasPrefix(d, other+"/") {
					t.Errorf("%s depends on %s", pkg, d)
				}
			}
		}
	}
	if checked < 3 {
		t.Fatalf("checked only %d packages; go list output:\n%s", checked, out)
	}
}
