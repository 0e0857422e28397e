package coverage

import (
	"cmp"
	"math"
	"slices"

	"github.com/paulmach/orb"

	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/wire"
)

// Camera is one camera's relation to a point.
type Camera struct {
	ID        string      `json:"id"`
	Name      string      `json:"name,omitempty"`
	Status    wire.Status `json:"status"`
	DistanceM float64     `json:"distance_m"`
	Covers    bool        `json:"covers"` // the point is within its range and field of view
}

// Nearest returns up to n cameras for point p: those that cover it, nearest
// first; when none does, simply the nearest cameras, so an operator always
// has something to look through. Whether a camera covers p is the wedge
// test the coverage grid uses, in a projection centred on p.
func Nearest(devices []fleet.Device, p wire.Location, n int) []Camera {
	proj := newProjection(p)
	var all []Camera
	for _, d := range devices {
		if d.Kind != wire.KindCamera {
			continue
		}
		w, ok := newWedge(proj.toXY(d.Location), d.Camera)
		all = append(all, Camera{ID: d.ID, Name: d.Name, Status: d.Status,
			DistanceM: math.Round(Distance(d.Location, p)*10) / 10, Covers: ok && w.contains(orb.Point{})})
	}
	slices.SortFunc(all, func(a, b Camera) int {
		if a.Covers != b.Covers {
			if a.Covers {
				return -1
			}
			return 1
		}
		return cmp.Compare(a.DistanceM, b.DistanceM)
	})
	if len(all) > 0 && all[0].Covers {
		k := 0
		for k < len(all) && all[k].Covers {
			k++
		}
		all = all[:k]
	}
	return all[:min(n, len(all))]
}
