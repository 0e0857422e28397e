package alarm

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/citywatch/citywatch/wire"
)

// Rule says how one source (optionally narrowed to a device or sensor kind)
// raises alarms. rules.default.yaml documents each field.
type Rule struct {
	Source        Source
	DeviceKind    wire.DeviceKind // empty: any
	SensorKind    wire.SensorKind // empty: any; implies a sensor
	Severity      Severity
	Hold          time.Duration
	ClearHold     time.Duration
	EscalateAfter time.Duration // zero: never
	Flap          Flap
	// Threshold rules only (see thresholds.go): the condition is Metric
	// past Limit, above it when Above, else below it.
	Metric string
	Above  bool
	Limit  float64
	// Linkage is what a new alarm of the rule does at the consoles.
	Linkage Linkage
}

// Linkage (报警联动) is what a new alarm does at the consoles that see it:
// show the video of the camera(s) covering its device on a wall tile or in
// a pop-up player, and whether acknowledging it needs a note. The console
// finds the cameras (the device itself if a camera, else the nearest that
// see it, from the hub's coverage model).
type Linkage struct {
	Video   string `json:"video,omitempty"`    // "", "wall" or "popup"
	Tile    int    `json:"tile,omitempty"`     // wall tile, 1-based; 0: the first
	Cameras int    `json:"cameras,omitempty"`  // how many covering cameras, 1–4 (default 1)
	AckNote bool   `json:"ack_note,omitempty"` // acknowledging needs a note
}

// Linkage video targets.
const (
	VideoWall  = "wall"
	VideoPopup = "popup"
)

// Flap is flap detection: Transitions changes of the condition within
// Window make it flapping. Zero Transitions disables it.
type Flap struct {
	Transitions int
	Window      time.Duration
}

// Rules is a rule set; see match for which rule applies.
type Rules []Rule

// match returns the most specific rule for a condition: sensor kind beats
// device kind beats the source alone. metric is empty except for threshold
// conditions, where only rules naming that metric apply.
func (rs Rules) match(src Source, dk wire.DeviceKind, sk wire.SensorKind, metric string) (Rule, bool) {
	best, score := Rule{}, -1
	for _, r := range rs {
		if r.Source != src || r.Metric != metric || (r.DeviceKind != "" && r.DeviceKind != dk) || (r.SensorKind != "" && r.SensorKind != sk) {
			continue
		}
		s := 0
		if r.SensorKind != "" {
			s = 2
		} else if r.DeviceKind != "" {
			s = 1
		}
		if s > score {
			best, score = r, s
		}
	}
	return best, score >= 0
}

//go:embed rules.default.yaml
var defaultYAML []byte

// DefaultYAML returns the documented default rules file, for operators to
// copy and edit.
func DefaultYAML() []byte { return bytes.Clone(defaultYAML) }

// DefaultRules returns the rules of rules.default.yaml.
func DefaultRules() Rules {
	rs, err := ParseRules(defaultYAML)
	if err != nil {
		// The file is compiled in and a test parses it: this cannot happen
		// in a built binary.
		panic(fmt.Sprintf("alarm: embedded default rules: %v", err))
	}
	return rs
}

// yamlRule is the file form of a Rule: severity stays a string so that every
// bad value is reported together by validation instead of the decoder
// stopping at the first.
type yamlRule struct {
	Source        Source          `yaml:"source"`
	DeviceKind    wire.DeviceKind `yaml:"device_kind"`
	SensorKind    wire.SensorKind `yaml:"sensor_kind"`
	Severity      string          `yaml:"severity"`
	Hold          time.Duration   `yaml:"hold"`
	ClearHold     time.Duration   `yaml:"clear_hold"`
	EscalateAfter time.Duration   `yaml:"escalate_after"`
	Flap          struct {
		Transitions int           `yaml:"transitions"`
		Window      time.Duration `yaml:"window"`
	} `yaml:"flap"`
	Metric string   `yaml:"metric"`
	Below  *float64 `yaml:"below"`
	Above  *float64 `yaml:"above"`
	// Linkage.
	Video   string `yaml:"video"`
	Tile    int    `yaml:"wall_tile"`
	Cameras int    `yaml:"cameras"`
	AckNote bool   `yaml:"ack_note"`
}

// ParseRules reads a rules file (the format of rules.default.yaml) and
// reports every problem it finds at once.
func ParseRules(data []byte) (Rules, error) {
	var file struct {
		Rules []yamlRule `yaml:"rules"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true) // a misspelt key is an error, not a silently missing setting
	if err := dec.Decode(&file); errors.Is(err, io.EOF) {
		// No rules would mean no alarms at all: surely a mistake.
		return nil, errors.New("alarm rules: empty file")
	} else if err != nil {
		return nil, fmt.Errorf("alarm rules: %w", err)
	}
	var errs []error
	bad := func(i int, format string, args ...any) {
		errs = append(errs, fmt.Errorf("alarm rules: rule %d: %s", i+1, fmt.Sprintf(format, args...)))
	}
	seen := map[[4]string]int{}
	rs := make(Rules, 0, len(file.Rules))
	for i, y := range file.Rules {
		r := Rule{
			Source: y.Source, DeviceKind: y.DeviceKind, SensorKind: y.SensorKind,
			Hold: y.Hold, ClearHold: y.ClearHold, EscalateAfter: y.EscalateAfter,
			Flap:    Flap{Transitions: y.Flap.Transitions, Window: y.Flap.Window},
			Linkage: Linkage{Video: y.Video, Tile: y.Tile, Cameras: y.Cameras, AckNote: y.AckNote},
		}
		switch {
		case y.Video != "" && y.Video != VideoWall && y.Video != VideoPopup:
			bad(i, "video %q: want wall or popup", y.Video)
		case y.Video == "" && (y.Tile != 0 || y.Cameras != 0):
			bad(i, "wall_tile and cameras need video")
		case y.Tile < 0 || y.Tile > 16:
			bad(i, "wall_tile %d: want 1-16", y.Tile)
		case y.Video == VideoPopup && y.Tile != 0:
			bad(i, "wall_tile is for video: wall")
		case y.Cameras < 0 || y.Cameras > 4:
			bad(i, "cameras %d: want 1-4", y.Cameras)
		}
		if r.Linkage.Video != "" && r.Linkage.Cameras == 0 {
			r.Linkage.Cameras = 1
		}
		if !slices.Contains(Sources, r.Source) {
			bad(i, "unknown source %q", r.Source)
		}
		if r.DeviceKind != "" && r.DeviceKind != wire.KindCamera && r.DeviceKind != wire.KindSensor {
			bad(i, "unknown device_kind %q", r.DeviceKind)
		}
		if r.SensorKind != "" {
			if !r.SensorKind.Valid() {
				bad(i, "unknown sensor_kind %q", r.SensorKind)
			}
			if r.DeviceKind == wire.KindCamera {
				bad(i, "sensor_kind %q with device_kind camera never matches", r.SensorKind)
			}
		}
		if y.Severity == "" {
			bad(i, "severity is required")
		} else if s, err := ParseSeverity(y.Severity); err != nil {
			bad(i, "%v", err)
		} else {
			r.Severity = s
		}
		for _, d := range []struct {
			name string
			v    time.Duration
		}{{"hold", r.Hold}, {"clear_hold", r.ClearHold}, {"escalate_after", r.EscalateAfter}, {"flap.window", r.Flap.Window}} {
			if d.v < 0 {
				bad(i, "%s is negative (%s)", d.name, d.v)
			}
		}
		switch {
		case r.Flap.Transitions < 0 || r.Flap.Transitions == 1:
			bad(i, "flap.transitions must be 0 (off) or at least 2, not %d", r.Flap.Transitions)
		case r.Flap.Transitions > 0 && r.Flap.Window <= 0:
			bad(i, "flap.transitions needs a positive flap.window")
		case r.Flap.Transitions == 0 && r.Flap.Window > 0:
			bad(i, "flap.window without flap.transitions")
		}
		if r.Source == SourceThreshold {
			parseThreshold(&r, y, func(format string, args ...any) { bad(i, format, args...) })
		} else if y.Metric != "" || y.Below != nil || y.Above != nil {
			bad(i, "metric, below and above are for threshold rules only")
		}
		k := [4]string{string(r.Source), string(r.DeviceKind), string(r.SensorKind), r.Metric}
		if j, dup := seen[k]; dup && r.Metric != "" {
			bad(i, "same metric and device_kind as threshold rule %d", j+1)
		} else if dup {
			bad(i, "same source, device_kind and sensor_kind as rule %d", j+1)
		} else {
			seen[k] = i
		}
		rs = append(rs, r)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return rs, nil
}
