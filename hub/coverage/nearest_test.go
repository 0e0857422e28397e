package coverage

import (
	"math"
	"testing"

	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/wire"
)

var sensor = wire.Location{Lat: 30.5900, Lon: 114.3000}

// north returns the point m metres north of the sensor (1° lat ≈ 111.2 km).
func north(m float64) wire.Location {
	return wire.Location{Lat: sensor.Lat + m/111_195, Lon: sensor.Lon}
}

func cam(id string, at wire.Location, heading, fov, rng float64) fleet.Device {
	return fleet.Device{ID: id, Kind: wire.KindCamera, Status: wire.StatusOnline, Location: at,
		Camera: &wire.CameraInfo{Heading: heading, FOV: fov, Range: rng}}
}

func TestDistanceAndBearing(t *testing.T) {
	if d := Distance(sensor, north(100)); math.Abs(d-100) > 0.5 {
		t.Errorf("distance %v, want 100 m", d)
	}
	if b := Bearing(north(100), sensor); math.Abs(b-180) > 0.01 {
		t.Errorf("bearing %v, want 180 (south)", b)
	}
}

func TestNearest(t *testing.T) {
	devices := []fleet.Device{
		cam("faces-sensor-far", north(60), 180, 60, 100),  // looks south at the sensor
		cam("faces-away-near", north(20), 0, 60, 100),     // nearer, but looks north
		cam("faces-sensor-near", north(40), 170, 40, 100), // within its 20° half angle
		cam("out-of-range", north(150), 180, 60, 100),     // looks at it, too far
		{ID: "pir", Kind: wire.KindSensor, Location: sensor},
	}
	got := Nearest(devices, sensor, 4)
	if len(got) != 2 || got[0].ID != "faces-sensor-near" || got[1].ID != "faces-sensor-far" || !got[0].Covers {
		t.Fatalf("Nearest = %+v, want the two cameras that face the sensor, nearest first", got)
	}
	// None covers: the nearest cameras, so there is still something to see.
	got = Nearest(devices[1:2], sensor, 4)
	if len(got) != 1 || got[0].ID != "faces-away-near" || got[0].Covers {
		t.Fatalf("fallback = %+v", got)
	}
	if got := Nearest(devices, sensor, 1); len(got) != 1 {
		t.Fatalf("n=1 gave %d", len(got))
	}
}
