package coverage

import (
	"cmp"
	"math"
	"slices"
	"time"

	"github.com/citywatch/citywatch/hub/auth"
)

// Summary is the coverage now, per district and per area of interest: the
// answer of GET /api/coverage.
type Summary struct {
	At        time.Time          `json:"at"`
	CellSizeM float64            `json:"cell_size_m"`
	Districts []DistrictCoverage `json:"districts"`
	Areas     []AreaCoverage     `json:"areas"`
}

// Coverage is how much of an area cameras see. Percentages are of the
// area's cells (weighted: of their weights), 0 to 100.
type Coverage struct {
	Cells               int64   `json:"cells"`
	DesignedCells       int64   `json:"designed_cells"` // seen by at least one camera, working or not
	CurrentCells        int64   `json:"current_cells"`  // seen by at least one working camera
	FragileCells        int64   `json:"fragile_cells"`  // seen by exactly one working camera
	DesignedPct         float64 `json:"designed_pct"`
	CurrentPct          float64 `json:"current_pct"`
	WeightedDesignedPct float64 `json:"weighted_designed_pct"`
	WeightedCurrentPct  float64 `json:"weighted_current_pct"`
}

// DistrictCoverage is one district's coverage.
type DistrictCoverage struct {
	District string `json:"district"`
	Coverage
}

// AreaCoverage is one area of interest's coverage.
type AreaCoverage struct {
	ID       int     `json:"id"` // the feature's index in the areas file
	Name     string  `json:"name"`
	Kind     string  `json:"kind,omitempty"`
	Weight   float64 `json:"weight"`
	District string  `json:"district,omitempty"`
	Coverage
}

func pct(n, of int64) float64 {
	if of <= 0 {
		return 0
	}
	return math.Round(10000*float64(n)/float64(of)) / 100
}

func (t tally) coverage() Coverage {
	return Coverage{
		Cells: t.cells, DesignedCells: t.designed, CurrentCells: t.current, FragileCells: t.fragile,
		DesignedPct: pct(t.designed, t.cells), CurrentPct: pct(t.current, t.cells),
		WeightedDesignedPct: pct(t.wDesigned, t.wCells), WeightedCurrentPct: pct(t.wCurrent, t.wCells),
	}
}

// Summary returns the coverage of the districts scope allows (a scope of
// sites only sees none: a district's coverage is made of cameras beyond
// its sites) and of their areas of interest; district, when not empty,
// keeps only that district.
func (m *Model) Summary(scope auth.Scope, district string) Summary {
	out := Summary{At: m.deps.Now().UTC(), CellSizeM: m.cfg.CellSize, Districts: []DistrictCoverage{}, Areas: []AreaCoverage{}}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.atlas == nil {
		return out
	}
	for k, name := range m.atlas.names.list {
		t := m.dist[k]
		if (t.cells == 0 && k >= len(m.atlas.districts)) || !m.districtVisible(scope, district, int32(k)) {
			continue
		}
		out.Districts = append(out.Districts, DistrictCoverage{District: name, Coverage: t.coverage()})
	}
	// The districts file's order first, the others (named by cameras) by
	// name.
	nf := 0
	for nf < len(out.Districts) && m.isFileDistrict(out.Districts[nf].District) {
		nf++
	}
	slices.SortFunc(out.Districts[nf:], func(a, b DistrictCoverage) int { return cmp.Compare(a.District, b.District) })
	for k := range m.atlas.areas {
		r := &m.atlas.areas[k]
		if !m.districtVisible(scope, district, r.dist) {
			continue
		}
		out.Areas = append(out.Areas, AreaCoverage{ID: r.index, Name: r.name, Kind: r.kind, Weight: float64(r.weight) / unitWeight,
			District: m.districtName(r.dist), Coverage: m.aoi[k].coverage()})
	}
	return out
}

func (m *Model) isFileDistrict(name string) bool {
	k, ok := m.atlas.names.index[name]
	return ok && int(k) < len(m.atlas.districts)
}

func (m *Model) districtName(k int32) string {
	if k < 0 {
		return ""
	}
	return m.atlas.names.list[k]
}

// districtVisible reports whether district k (-1: none) is in scope and,
// when filter is not empty, is the one asked for. Things outside every
// district are seen by a scope of the whole city only.
func (m *Model) districtVisible(scope auth.Scope, filter string, k int32) bool {
	name := m.districtName(k)
	if filter != "" && name != filter {
		return false
	}
	if k < 0 {
		return scope.All
	}
	return scope.Allows(name, "")
}

// knows reports whether a district of that name is known: in the
// districts file, or named by a camera or an area.
func (m *Model) knows(name string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.atlas == nil {
		return false
	}
	_, ok := m.atlas.names.index[name]
	return ok
}

// LostBy is the area no working camera sees now that one of cameras is
// designed to see, in hectares, plain and weighted by the areas of
// interest: what their outage costs the city, for ranking work.
func (m *Model) LostBy(cameras []string) (ha, weightedHa float64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	seen := map[int32]bool{}
	var cells, weight int64
	for _, id := range cameras {
		k, ok := m.byID.get(id)
		if !ok {
			continue
		}
		for _, ci := range m.cellsOf(&m.cams[k]) {
			if c := &m.cells[ci]; c.working == 0 && !seen[ci] {
				seen[ci] = true
				cells++
				weight += int64(m.atlas.factsOf(c.facts).weight)
			}
		}
	}
	cellHa := m.cfg.CellSize * m.cfg.CellSize / 10_000
	return float64(cells) * cellHa, float64(weight) / unitWeight * cellHa
}
