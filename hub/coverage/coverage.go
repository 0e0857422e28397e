// Package coverage answers which cameras look at a place: the cameras that
// verify a sensor's alarm now, the coverage maps of later issues. A camera
// covers a point when the point is within its useful range and inside its
// horizontal field of view around its heading.
package coverage

import (
	"math"
	"slices"

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

// earthRadius is the mean Earth radius in metres.
const earthRadius = 6_371_000

// Distance is the great-circle distance between a and b in metres.
func Distance(a, b wire.Location) float64 {
	φ1, φ2 := rad(a.Lat), rad(b.Lat)
	dφ, dλ := φ2-φ1, rad(b.Lon-a.Lon)
	h := math.Sin(dφ/2)*math.Sin(dφ/2) + math.Cos(φ1)*math.Cos(φ2)*math.Sin(dλ/2)*math.Sin(dλ/2)
	return 2 * earthRadius * math.Asin(math.Min(1, math.Sqrt(h)))
}

// Bearing is the initial bearing from a to b, degrees clockwise from north.
func Bearing(a, b wire.Location) float64 {
	φ1, φ2, dλ := rad(a.Lat), rad(b.Lat), rad(b.Lon-a.Lon)
	y := math.Sin(dλ) * math.Cos(φ2)
	x := math.Cos(φ1)*math.Sin(φ2) - math.Sin(φ1)*math.Cos(φ2)*math.Cos(dλ)
	return math.Mod(math.Atan2(y, x)*180/math.Pi+360, 360)
}

func rad(deg float64) float64 { return deg * math.Pi / 180 }

// covers reports whether camera c sees point p at distance d.
func covers(c fleet.Device, p wire.Location, d float64) bool {
	if c.Camera == nil || c.Camera.Range <= 0 || d > c.Camera.Range {
		return false
	}
	if d < 1 {
		return true // the camera is on the spot
	}
	off := math.Abs(math.Mod(Bearing(c.Location, p)-c.Camera.Heading+540, 360) - 180)
	return off <= c.Camera.FOV/2
}

// Nearest returns up to n cameras for point p: those that cover it, nearest
// first; when none does, simply the nearest cameras, so an operator always
// has something to look through.
func Nearest(devices []fleet.Device, p wire.Location, n int) []Camera {
	var all []Camera
	for _, d := range devices {
		if d.Kind != wire.KindCamera {
			continue
		}
		dist := Distance(d.Location, p)
		all = append(all, Camera{ID: d.ID, Name: d.Name, Status: d.Status, DistanceM: math.Round(dist*10) / 10, Covers: covers(d, p, dist)})
	}
	slices.SortFunc(all, func(a, b Camera) int {
		if a.Covers != b.Covers {
			if a.Covers {
				return -1
			}
			return 1
		}
		switch {
		case a.DistanceM < b.DistanceM:
			return -1
		case a.DistanceM > b.DistanceM:
			return 1
		}
		return 0
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
