package sim

import (
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/citywatch/citywatch/agent/config"
	"github.com/citywatch/citywatch/wire"
)

// SensorDriver is the driver name the generated sensors use; the Sim
// registers its sensor.Sim under it.
const SensorDriver = "sim"

// CityOptions sizes the generated city. Zero fields take the defaults of
// the demo city.
type CityOptions struct {
	Seed      uint64
	Districts int           // default 6, at most len(districtNames)
	Sites     int           // one agent each; default 20
	Devices   int           // in total, about 60 % cameras; default 200
	Center    wire.Location // default 30.59° N, 114.30° E
	// Switches gives every site a switch behind its uplink with the
	// site's cameras on it, so taking all of them down is a switch
	// failure the hub explains as one root cause. Off by default: a site
	// with one camera would have every camera fault explained as its
	// switch's.
	Switches bool
	// PowerFeeds puts every site of a district on one mains feed,
	// "feed-<district>", so that disconnecting the district's agents is
	// a power cut the hub explains as one root cause.
	PowerFeeds bool
}

// Demo city defaults.
const (
	DefaultDistricts = 6
	DefaultSites     = 20
	DefaultDevices   = 200
)

// defaultCenter is the centre of the fictional city: on the Yangtze, where
// a prefecture-level city of the size citywatch targets would be.
var defaultCenter = wire.Location{Lat: 30.59, Lon: 114.30}

// District is a named part of the city.
type District struct {
	Name   string // English name, used as the wire district
	NameZH string // Chinese name, for a localised console
	Center wire.Location
}

// City is a generated city: its districts and one agent configuration per
// site. Camera RTSP and snapshot URLs are empty: whoever serves the cameras
// fills them in (Sim does).
type City struct {
	Districts []District
	Agents    []config.Config
}

// districtNames are the districts a city can have; a city uses the first
// CityOptions.Districts of them.
var districtNames = []struct{ en, zh string }{
	{"Riverside", "滨江区"},
	{"Old Town", "老城区"},
	{"Harbour", "港区"},
	{"University", "大学城"},
	{"Hi-Tech Park", "高新园区"},
	{"Railway Station", "火车站片区"},
	{"Lakeside", "湖滨区"},
	{"Industrial Zone", "工业园区"},
}

// siteKinds are what a site is, in English and Chinese.
var siteKinds = []struct{ en, zh string }{
	{"Metro Station", "地铁站"}, {"Central Market", "中心市场"}, {"Ferry Terminal", "轮渡码头"},
	{"Primary School", "小学"}, {"Hospital", "医院"}, {"Park Gate", "公园大门"}, {"Bus Depot", "公交场站"},
	{"Police Post", "警务站"}, {"Library", "图书馆"}, {"Stadium", "体育场"}, {"Substation", "变电站"},
	{"Water Works", "水厂"}, {"Shopping Mall", "购物中心"}, {"Bridge Approach", "桥头"}, {"Plaza", "广场"},
	{"Community Centre", "社区中心"},
}

// zhCN is a name for consoles in Chinese.
func zhCN(name string) wire.Names { return wire.Names{"zh-CN": name} }

// Makers of the simulated devices, picked from the site and number so the
// city's random layout stays what it was before devices had makers.
var (
	cameraVendors = []string{"Hikvision", "Dahua", "Uniview", "Tiandy"}
	sensorVendors = []string{"Bosch", "Honeywell", "Risco"}
)

func vendorOf(site string, n int, makers []string) string {
	h := fnv.New32a()
	h.Write([]byte(site))
	return makers[(int(h.Sum32())+n)%len(makers)]
}

// assetOf is a simulated unit's identity, from its id and maker so the
// city's random layout stays what it was before units had identities.
func assetOf(device, vendor string) config.Asset {
	h := fnv.New32a()
	h.Write([]byte(device))
	n := h.Sum32()
	return config.Asset{
		Model:     fmt.Sprintf("%s-%d", strings.ToUpper(vendor[:2]), 2000+n%800),
		Firmware:  fmt.Sprintf("V%d.%d.%d", 4+n%2, n%8, n%13),
		Serial:    fmt.Sprintf("%s%010d", strings.ToUpper(vendor[:2]), n),
		Installed: time.Date(2019+int(n%6), time.Month(1+n%12), 1+int(n%28), 0, 0, 0, 0, time.UTC).Format(time.DateOnly),
	}
}

// cameraSpots are where on a site a camera looks, in English and Chinese.
var cameraSpots = []struct{ en, zh string }{
	{"Entrance", "入口"}, {"Car Park", "停车场"}, {"Perimeter N", "北侧周界"}, {"Perimeter S", "南侧周界"},
	{"Lobby", "大堂"}, {"Gate", "大门"}, {"Loading Bay", "装卸区"}, {"Street", "街面"},
	{"Platform", "站台"}, {"Corridor", "走廊"}, {"Roof", "屋顶"}, {"Side Door", "侧门"},
}

// sensorKinds gives each sensor kind its id prefix, display names and the
// criticality an installer would give it.
var sensorKinds = map[wire.SensorKind]struct {
	short, name, zh string
	criticality     int
}{
	wire.SensorIntrusion:  {"pir", "PIR", "红外探测器", 4},
	wire.SensorDoor:       {"door", "Door", "门磁", 3},
	wire.SensorSmoke:      {"smoke", "Smoke", "烟感", 5},
	wire.SensorVibration:  {"vib", "Vibration", "振动探测器", 2},
	wire.SensorGlassBreak: {"glass", "Glass-break", "玻璃破碎探测器", 3},
	wire.SensorPower:      {"power", "UPS", "UPS 电源", 3},
}

// Metres per degree of latitude; a degree of longitude is this times
// cos(latitude).
const metresPerDegree = 111_320

// GenerateCity builds a fictional city, deterministically for a seed:
// districts on a ring around the centre, sites clustered in their
// district, devices within a stone's throw of their site. Device counts vary
// from site to site but add up to opts.Devices.
func GenerateCity(opts CityOptions) (City, error) {
	if opts.Districts == 0 {
		opts.Districts = DefaultDistricts
	}
	if opts.Sites == 0 {
		opts.Sites = DefaultSites
	}
	if opts.Devices == 0 {
		opts.Devices = DefaultDevices
	}
	if opts.Center == (wire.Location{}) {
		opts.Center = defaultCenter
	}
	switch {
	case opts.Districts < 1 || opts.Districts > len(districtNames):
		return City{}, fmt.Errorf("sim: city: %d districts, want 1–%d", opts.Districts, len(districtNames))
	case opts.Sites < 1:
		return City{}, fmt.Errorf("sim: city: %d sites, want at least 1", opts.Sites)
	case opts.Devices < opts.Sites || opts.Devices > opts.Sites*wire.MaxDevices/2:
		return City{}, fmt.Errorf("sim: city: %d devices for %d sites, want 1–%d per site on average",
			opts.Devices, opts.Sites, wire.MaxDevices/2)
	}
	g := &cityGen{rng: rand.New(rand.NewPCG(opts.Seed, 0x636974797761)), center: opts.Center}
	city := City{Districts: g.districts(opts.Districts)}
	g.kinds = g.rng.Perm(len(siteKinds))
	counts := g.split(opts.Devices, opts.Sites)
	for i := range opts.Sites {
		// Round robin, so every district has sites.
		d, n := i%opts.Districts, i/opts.Districts
		a := g.site(city.Districts[d], d, n, counts[i])
		if opts.Switches {
			switched(&a)
		}
		if opts.PowerFeeds {
			a.Site.PowerFeed = "feed-" + slug(city.Districts[d].Name)
		}
		city.Agents = append(city.Agents, a)
	}
	return city, nil
}

// switched puts a site's cameras on a switch behind the site's uplink.
func switched(a *config.Config) {
	up, sw := "up-"+a.Site.ID, "sw-"+a.Site.ID
	a.Topology = []config.Node{{ID: up, Kind: wire.NodeUplink, Name: "Site uplink"}, {ID: sw, Kind: wire.NodeSwitch, Name: "Camera switch", Parent: up}}
	for i := range a.Cameras {
		a.Cameras[i].Parent = sw
	}
}

type cityGen struct {
	rng       *rand.Rand
	center    wire.Location
	kinds     []int // permutation of siteKinds
	sensorSeq int   // rotates sensor kinds across the city so every kind occurs
}

func (g *cityGen) districts(n int) []District {
	ds := make([]District, n)
	phase := g.rng.Float64() * 2 * math.Pi
	for i := range ds {
		// The first district is the city centre; the others sit 2.5–7 km
		// from it, spread around it.
		loc := g.center
		if i > 0 {
			angle := phase + 2*math.Pi*float64(i)/float64(n-1) + g.rng.NormFloat64()*0.2
			loc = offset(g.center, angle, 2500+g.rng.Float64()*4500)
		}
		ds[i] = District{Name: districtNames[i].en, NameZH: districtNames[i].zh, Center: round(loc)}
	}
	return ds
}

// split divides total into n parts of varying size (±30 %), each at least 1.
func (g *cityGen) split(total, n int) []int {
	weights := make([]float64, n)
	var sum float64
	for i := range weights {
		weights[i] = 0.7 + 0.6*g.rng.Float64()
		sum += weights[i]
	}
	counts := make([]int, n)
	left := total
	for i, w := range weights {
		counts[i] = max(1, int(float64(total)*w/sum))
		left -= counts[i]
	}
	for i := 0; left != 0; i = (i + 1) % n {
		switch {
		case left > 0:
			counts[i]++
			left--
		case counts[i] > 1:
			counts[i]--
			left++
		}
	}
	return counts
}

// site generates the agent configuration of the n-th site of the di-th
// district d.
func (g *cityGen) site(d District, di, n, devices int) config.Config {
	id := fmt.Sprintf("%s-%02d", slug(d.Name), n+1)
	// Offset by district, so districts do not all start with the same kind.
	kind := siteKinds[g.kinds[(n+di)%len(siteKinds)]]
	name, nameZH := d.Name+" "+kind.en, d.NameZH+kind.zh
	if n >= len(siteKinds) {
		name += fmt.Sprintf(" %d", n/len(siteKinds)+1)
		nameZH += fmt.Sprintf(" %d 号", n/len(siteKinds)+1)
	}
	// Sites cluster within about 1.5 km of the district centre.
	loc := offset(d.Center, g.rng.Float64()*2*math.Pi, math.Abs(g.rng.NormFloat64())*700)
	cfg := config.Default()
	cfg.ID = "agent-" + id
	// The agent id, as for a real agent: a broker that authenticates
	// agents ties the client id to the login.
	cfg.Broker.ClientID = cfg.ID
	cfg.Site = config.Site{ID: id, Name: name, District: d.Name, Location: round(loc),
		Names: zhCN(nameZH), DistrictNames: zhCN(d.NameZH)}

	cameras := int(math.Round(float64(devices) * 0.6))
	if cameras == 0 && devices > 1 {
		cameras = 1 // every site with room for one has a camera
	}
	for i := range cameras {
		spot := cameraSpots[i%len(cameraSpots)]
		cfg.Cameras = append(cfg.Cameras, config.Camera{
			ID:          fmt.Sprintf("%s-cam-%02d", id, i+1),
			Name:        fmt.Sprintf("%s %s", name, spot.en),
			Names:       zhCN(fmt.Sprintf("%s%s %d 号摄像机", nameZH, spot.zh, i+1)),
			Location:    g.near(loc),
			Heading:     float64(g.rng.IntN(72) * 5),
			FOV:         []float64{50, 70, 90, 110}[g.rng.IntN(4)],
			RangeM:      float64(30 + g.rng.IntN(13)*10),
			District:    d.Name,
			Criticality: 2 + g.rng.IntN(3),
			MinFPS:      cfg.Probe.MinFPS,
			Vendor:      vendorOf(id, i, cameraVendors),
			Asset:       assetOf(fmt.Sprintf("%s-cam-%02d", id, i+1), vendorOf(id, i, cameraVendors)),
		})
	}
	seq := make(map[wire.SensorKind]int)
	for range devices - cameras {
		k := wire.SensorKinds[g.sensorSeq%len(wire.SensorKinds)]
		g.sensorSeq++
		seq[k]++
		info := sensorKinds[k]
		cfg.Sensors = append(cfg.Sensors, config.Sensor{
			ID:          fmt.Sprintf("%s-%s-%02d", id, info.short, seq[k]),
			Name:        fmt.Sprintf("%s %s %d", name, info.name, seq[k]),
			Names:       zhCN(fmt.Sprintf("%s%s %d", nameZH, info.zh, seq[k])),
			Kind:        k,
			Location:    g.near(loc),
			District:    d.Name,
			Driver:      SensorDriver,
			Supervision: config.DefaultSupervision,
			Criticality: info.criticality,
			Vendor:      vendorOf(id, seq[k], sensorVendors),
			Asset:       assetOf(fmt.Sprintf("%s-%s-%02d", id, info.short, seq[k]), vendorOf(id, seq[k], sensorVendors)),
		})
	}
	return cfg
}

// near returns a point within about 80 m of loc, where a site's devices are.
func (g *cityGen) near(loc wire.Location) wire.Location {
	return round(offset(loc, g.rng.Float64()*2*math.Pi, g.rng.Float64()*80))
}

// offset moves loc by metres in direction angle (radians from north).
func offset(loc wire.Location, angle, metres float64) wire.Location {
	dLat := metres * math.Cos(angle) / metresPerDegree
	dLon := metres * math.Sin(angle) / (metresPerDegree * math.Cos(loc.Lat*math.Pi/180))
	return wire.Location{Lat: loc.Lat + dLat, Lon: loc.Lon + dLon}
}

// round keeps six decimals (about 0.1 m): enough for a map, and stable in
// JSON and YAML.
func round(l wire.Location) wire.Location {
	r := func(f float64) float64 { return math.Round(f*1e6) / 1e6 }
	return wire.Location{Lat: r(l.Lat), Lon: r(l.Lon)}
}

func slug(s string) string {
	return strings.ReplaceAll(strings.ToLower(s), " ", "-")
}

// Devices returns the number of cameras and sensors of the city.
func (c City) Devices() (cameras, sensors int) {
	for _, a := range c.Agents {
		cameras += len(a.Cameras)
		sensors += len(a.Sensors)
	}
	return cameras, sensors
}
