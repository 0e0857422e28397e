package e2e

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/citywatch/citywatch/agent/config"
	"github.com/citywatch/citywatch/agent/sim"
	hubconfig "github.com/citywatch/citywatch/hub/config"
)

// mapCity writes the city's districts and areas of interest as the hub's
// map files, as the demo does, and returns the hub configuration change.
func mapCity(t testing.TB, city sim.CityOptions) func(*hubconfig.Config) {
	t.Helper()
	plan, err := sim.GenerateCity(city)
	if err != nil {
		t.Fatal(err)
	}
	d, a, err := plan.GeoJSON()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	districts, areas := filepath.Join(dir, "districts.geojson"), filepath.Join(dir, "areas.geojson")
	if err := os.WriteFile(districts, d, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(areas, a, 0o600); err != nil {
		t.Fatal(err)
	}
	return func(c *hubconfig.Config) { c.Map.Districts, c.Map.Areas = districts, areas }
}

type coverageFigures struct {
	Districts []struct {
		District      string `json:"district"`
		Cells         int64  `json:"cells"`
		DesignedCells int64  `json:"designed_cells"`
		CurrentCells  int64  `json:"current_cells"`
	} `json:"districts"`
}

func (c coverageFigures) current(district string) (cur, designed int64) {
	for _, d := range c.Districts {
		if d.District == district {
			return d.CurrentCells, d.DesignedCells
		}
	}
	return -1, -1
}

type cellCollection struct {
	Type     string `json:"type"`
	Features []struct {
		Properties struct {
			State   string `json:"state"`
			Cameras int    `json:"cameras"`
			Working int    `json:"working"`
		} `json:"properties"`
	} `json:"features"`
}

func (c cellCollection) count(state string) (n int) {
	for _, f := range c.Features {
		if f.Properties.State == state {
			n++
		}
	}
	return n
}

// A camera going offline costs its district exactly the cells no other
// working camera sees, at once; the ledger of the last hour charges the
// loss to that camera alone (cell-hours = its lost cells × its hours down);
// the availability report shows its outage; recovery restores coverage.
func TestCoverageFollowsACameraOutage(t *testing.T) {
	s := startStack(t, stackOptions{city: smallCity, hubCfg: mapCity(t, smallCity)})
	s.waitAllOnline(t)
	var cam config.Camera
	for _, a := range s.sim.City().Agents {
		if len(a.Cameras) > 0 {
			cam = a.Cameras[0]
			break
		}
	}
	bbox := fmt.Sprintf("%f,%f,%f,%f", cam.Location.Lon-0.003, cam.Location.Lat-0.003, cam.Location.Lon+0.003, cam.Location.Lat+0.003)
	cellsPath := "api/coverage/cells?" + url.Values{"bbox": {bbox}}.Encode()

	var before coverageFigures
	s.api.getJSON(t, "api/coverage?district="+url.QueryEscape(cam.District), &before)
	cur0, designed := before.current(cam.District)
	if cur0 <= 0 || cur0 != designed {
		t.Fatalf("with every camera online, district %s has %d current of %d designed cells: %+v", cam.District, cur0, designed, before)
	}
	var cells cellCollection
	s.api.getJSON(t, cellsPath, &cells)
	if cells.Type != "FeatureCollection" || len(cells.Features) == 0 || cells.count("lost") != 0 {
		t.Fatalf("cells around %s before the outage: %d features, %d lost", cam.ID, len(cells.Features), cells.count("lost"))
	}

	down := time.Now()
	if err := s.sim.Fault(sim.Fault{Device: cam.ID, Fault: sim.FaultOffline}); err != nil {
		t.Fatal(err)
	}
	var lost int
	eventually(t, 20*time.Second, func() error {
		var now coverageFigures
		if err := s.api.fetch("api/coverage?district="+url.QueryEscape(cam.District), &now); err != nil {
			return err
		}
		var c cellCollection
		if err := s.api.fetch(cellsPath, &c); err != nil {
			return err
		}
		lost = c.count("lost")
		cur, _ := now.current(cam.District)
		if lost == 0 || cur != cur0-int64(lost) {
			return fmt.Errorf("district %s current cells %d (was %d), %d cells lost around %s", cam.District, cur, cur0, lost, cam.ID)
		}
		return nil
	})
	time.Sleep(3 * time.Second) // let the outage last

	q := url.Values{"from": {down.Add(-time.Hour).UTC().Format(time.RFC3339)}, "to": {time.Now().Add(time.Minute).UTC().Format(time.RFC3339)}}
	var ledger struct {
		Totals struct {
			Outage struct {
				CellHours float64 `json:"cell_hours"`
			} `json:"outage"`
		} `json:"totals"`
		Cameras []struct {
			ID        string  `json:"id"`
			DownHours float64 `json:"down_hours"`
			CellHours float64 `json:"cell_hours"`
		} `json:"cameras"`
	}
	s.api.getJSON(t, "api/coverage/ledger?"+q.Encode(), &ledger)
	if len(ledger.Cameras) == 0 || ledger.Cameras[0].ID != cam.ID {
		t.Fatalf("ledger ranks %+v, want %s first", ledger.Cameras, cam.ID)
	}
	c0 := ledger.Cameras[0]
	if c0.DownHours <= 0 || c0.DownHours > time.Since(down).Hours()+1e-3 {
		t.Errorf("%s down %.5f h by the ledger, %.5f h by the test", cam.ID, c0.DownHours, time.Since(down).Hours())
	}
	if want := float64(lost) * c0.DownHours; !near(c0.CellHours, want, 0.02) || !near(ledger.Totals.Outage.CellHours, c0.CellHours, 0.02) {
		t.Errorf("ledger charges %s %.4f cell-hours (total outage %.4f); %d lost cells × %.5f h = %.4f",
			cam.ID, c0.CellHours, ledger.Totals.Outage.CellHours, lost, c0.DownHours, want)
	}

	q.Set("group", "site")
	var report struct {
		Rows []struct {
			Key        string   `json:"key"`
			OfflineS   float64  `json:"offline_s"`
			OnlineRate *float64 `json:"online_rate"`
		} `json:"rows"`
		Total struct {
			OfflineS   float64  `json:"offline_s"`
			OnlineRate *float64 `json:"online_rate"`
		} `json:"total"`
	}
	s.api.getJSON(t, "api/reports/availability?"+q.Encode(), &report)
	if report.Total.OfflineS < 2 || report.Total.OnlineRate == nil || *report.Total.OnlineRate >= 1 {
		t.Errorf("availability total %+v: the outage of %s is missing", report.Total, cam.ID)
	}
	offline := 0.0
	for _, r := range report.Rows {
		offline += r.OfflineS
	}
	if !near(offline, report.Total.OfflineS, 0.001) {
		t.Errorf("site rows sum to %.1f s offline, the total says %.1f s", offline, report.Total.OfflineS)
	}

	if err := s.sim.Fault(sim.Fault{Device: cam.ID, Fault: sim.FaultRecover}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() error {
		var now coverageFigures
		if err := s.api.fetch("api/coverage?district="+url.QueryEscape(cam.District), &now); err != nil {
			return err
		}
		if cur, _ := now.current(cam.District); cur != cur0 {
			return fmt.Errorf("district %s current cells %d after recovery, %d before the outage", cam.District, cur, cur0)
		}
		return nil
	})
}

// near reports whether got is within frac of want (or both are 0).
func near(got, want, frac float64) bool {
	d := got - want
	if d < 0 {
		d = -d
	}
	return d <= frac*max(want, -want) || d < 1e-9
}

// Reports refuse what they do not understand rather than ignore it.
func TestReportParametersAreChecked(t *testing.T) {
	s := startStack(t, stackOptions{city: sim.CityOptions{Seed: 3, Districts: 1, Sites: 1, Devices: 2}})
	for _, path := range []string{
		"api/reports/availability?group=planet",
		"api/reports/availability?from=yesterday",
		"api/reports/availability?colour=red",
		"api/reports/series?district=a&district=b",
		"api/coverage/ledger?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z",
		"api/coverage?since=2026-01-01T00:00:00Z",
		"api/coverage/cells?bbox=1,2,3",
		"api/summary?colour=red",
	} {
		code, body := s.api.call(t, "GET", path, "")
		if code != 400 || !strings.Contains(body, "error") {
			t.Errorf("GET %s: %d %s, want 400 with an error", path, code, body)
		}
	}
}
