package sim

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/citywatch/citywatch/agent/sensor"
)

// Fault names. Which ones apply depends on the target: see Catalogue.
const (
	FaultOffline         = "offline"          // camera: port closed, connection refused
	FaultAuth            = "auth"             // camera: RTSP 401 even to the right credentials
	FaultNoStream        = "nostream"         // camera: DESCRIBE answers 404
	FaultHang            = "hang"             // camera: TCP accepted, never answered
	FaultTamper          = "tamper"           // ONVIF camera: its analytics report tampering
	FaultMotion          = "motion"           // ONVIF camera: its motion detection sees movement
	FaultSupervisionLoss = "supervision_loss" // sensor: stops checking in
	FaultTrigger         = "trigger"          // sensor: alarm contact goes active
	FaultRestore         = "restore"          // sensor: alarm contact back to normal; ONVIF camera: tampering and motion end
	FaultDisconnect      = "disconnect"       // agent: MQTT connection cut, Last Will fires
	FaultRecover         = "recover"          // any target: clear every fault
)

// Target kinds of a fault.
const (
	TargetCamera = "camera"
	TargetSensor = "sensor"
	TargetAgent  = "agent"
)

// Fault is one fault to inject. Exactly one of Device and Agent is set.
type Fault struct {
	Device string
	Agent  string
	Fault  string
	// For keeps an agent disconnected this long by refusing its
	// reconnects; zero lets it reconnect at once. Agent disconnect only.
	For time.Duration
}

// FaultSpec documents one fault of the catalogue.
type FaultSpec struct {
	Target string `json:"target"`
	Fault  string `json:"fault"`
	Effect string `json:"effect"`
}

// Catalogue lists every supported fault, for the control API and the docs.
func Catalogue() []FaultSpec {
	return []FaultSpec{
		{TargetCamera, FaultOffline, "RTSP port closed: connection refused; snapshot 503"},
		{TargetCamera, FaultAuth, "RTSP 401 even to the right credentials; snapshot 401"},
		{TargetCamera, FaultNoStream, "RTSP DESCRIBE 404; snapshot 503"},
		{TargetCamera, FaultHang, "TCP accepted, never answered: the client times out"},
		{TargetCamera, FaultTamper, "ONVIF cameras: the camera's analytics report tampering (covered, sprayed, turned away)"},
		{TargetCamera, FaultMotion, "ONVIF cameras: the camera's motion detection sees movement"},
		{TargetCamera, FaultRestore, "ONVIF cameras: the tampering and motion the camera reports end"},
		{TargetCamera, FaultRecover, "clears the camera's fault and ends its tampering and motion; same port as before"},
		{TargetSensor, FaultSupervisionLoss, "the sensor stops checking in"},
		{TargetSensor, FaultTrigger, "the sensor's alarm contact goes active"},
		{TargetSensor, FaultRestore, "the alarm contact returns to normal"},
		{TargetSensor, FaultRecover, "checks in again and returns to normal"},
		{TargetAgent, FaultDisconnect, "the agent's MQTT TCP connection is cut: the broker publishes its Last Will; " +
			`with "for", reconnects are refused for that long`},
		{TargetAgent, FaultRecover, "ends a disconnect window early"},
	}
}

// Errors of Sim.Fault, for callers that map them to HTTP statuses.
var (
	ErrUnknownFault  = errors.New("unknown fault")
	ErrUnknownDevice = errors.New("unknown device")
	ErrUnknownAgent  = errors.New("unknown agent")
	ErrBadFault      = errors.New("bad fault")
)

// ActiveFault is a fault in force, as listed by the control API.
type ActiveFault struct {
	Device string    `json:"device,omitempty"`
	Agent  string    `json:"agent,omitempty"`
	Fault  string    `json:"fault"`
	Since  time.Time `json:"since"`
	Until  time.Time `json:"until,omitzero"` // end of a disconnect window
}

// cameraFaulter is a camera as the fault table drives it: a real RTSP
// Camera, or a scale-mode stand-in answered by the in-process prober.
type cameraFaulter interface {
	SetFault(fault string) error
}

// cameraEvents are the camera faults an ONVIF camera's analytics report,
// by the event topic and data item they send; they stand beside the
// camera's RTSP fault.
var cameraEvents = map[string]struct{ topic, item string }{
	FaultTamper: {"tns1:RuleEngine/TamperDetector/Tamper", "IsTamper"},
	FaultMotion: {"tns1:VideoSource/MotionAlarm", "State"},
}

// faultTable validates faults against the simulated world, applies them
// and remembers which are in force.
type faultTable struct {
	cameras map[string]cameraFaulter
	onvif   map[string]*ONVIF // the cameras with an ONVIF service
	sensors map[string]bool   // ids of the sensors driven by driver
	driver  *sensor.Sim
	agents  map[string]*link

	mu     sync.Mutex // serialises Fault; guards active
	active map[faultKey]ActiveFault
}

// faultKey identifies an active fault: a camera has at most one RTSP
// fault, and may report tampering and motion beside it; a sensor may be
// silent and triggered at once.
type faultKey struct{ target, fault string }

func newFaultTable(driver *sensor.Sim) *faultTable {
	return &faultTable{
		cameras: make(map[string]cameraFaulter),
		onvif:   make(map[string]*ONVIF),
		sensors: make(map[string]bool),
		driver:  driver,
		agents:  make(map[string]*link),
		active:  make(map[faultKey]ActiveFault),
	}
}

// Fault validates and applies f. Errors wrap ErrBadFault, ErrUnknownFault,
// ErrUnknownDevice or ErrUnknownAgent.
func (t *faultTable) Fault(f Fault) error {
	switch {
	case (f.Device == "") == (f.Agent == ""):
		return fmt.Errorf("%w: name exactly one of device and agent", ErrBadFault)
	case f.For < 0:
		return fmt.Errorf("%w: negative duration %v", ErrBadFault, f.For)
	case f.For > 0 && (f.Agent == "" || f.Fault != FaultDisconnect):
		return fmt.Errorf("%w: \"for\" applies to agent disconnect only", ErrBadFault)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	if f.Agent != "" {
		return t.applyAgent(f, now)
	}
	if cam, ok := t.cameras[f.Device]; ok {
		if !allowed(TargetCamera, f.Fault) {
			return unknownFault(TargetCamera, f.Fault)
		}
		return t.applyCamera(cam, f, now)
	}
	if t.sensors[f.Device] {
		return t.applySensor(f, now)
	}
	return fmt.Errorf("%w %q", ErrUnknownDevice, f.Device)
}

func (t *faultTable) applyCamera(cam cameraFaulter, f Fault, now time.Time) error {
	id := f.Device
	ev, event := cameraEvents[f.Fault]
	o := t.onvif[id]
	switch {
	case o == nil && (event || f.Fault == FaultRestore):
		return fmt.Errorf("%w: camera %s has no ONVIF service to report %s", ErrBadFault, id, f.Fault)
	case event:
		o.Emit(ev.topic, ev.item, true)
		t.active[faultKey{id, f.Fault}] = ActiveFault{Device: id, Fault: f.Fault, Since: now}
		return nil
	case f.Fault == FaultRestore:
		t.endEvents(id)
		return nil
	}
	if err := cam.SetFault(f.Fault); err != nil {
		return err
	}
	// A new RTSP fault replaces the one before; what the camera reports
	// over ONVIF stands, unless it recovers altogether.
	for k := range t.active {
		if _, ev := cameraEvents[k.fault]; k.target == id && !ev {
			delete(t.active, k)
		}
	}
	if f.Fault == FaultRecover {
		t.endEvents(id)
	} else {
		t.active[faultKey{id, f.Fault}] = ActiveFault{Device: id, Fault: f.Fault, Since: now}
	}
	return nil
}

// endEvents ends the tampering and motion camera id reports; t.mu is held.
func (t *faultTable) endEvents(id string) {
	for fault, ev := range cameraEvents {
		if _, ok := t.active[faultKey{id, fault}]; ok {
			t.onvif[id].Emit(ev.topic, ev.item, false)
			delete(t.active, faultKey{id, fault})
		}
	}
}

func (t *faultTable) applySensor(f Fault, now time.Time) error {
	id := f.Device
	set := func(fault string) {
		t.active[faultKey{id, fault}] = ActiveFault{Device: id, Fault: fault, Since: now}
	}
	switch f.Fault {
	case FaultSupervisionLoss:
		t.driver.SetSupervision(id, false)
		set(f.Fault)
	case FaultTrigger:
		t.driver.Trigger(id, true)
		set(f.Fault)
	case FaultRestore:
		t.driver.Trigger(id, false)
		delete(t.active, faultKey{id, FaultTrigger})
	case FaultRecover:
		t.driver.SetSupervision(id, true)
		t.driver.Trigger(id, false)
		t.clear(id)
	default:
		return unknownFault(TargetSensor, f.Fault)
	}
	return nil
}

func (t *faultTable) applyAgent(f Fault, now time.Time) error {
	l, ok := t.agents[f.Agent]
	if !ok {
		return fmt.Errorf("%w %q", ErrUnknownAgent, f.Agent)
	}
	key := faultKey{f.Agent, FaultDisconnect}
	switch f.Fault {
	case FaultDisconnect:
		l.cut(f.For)
		// A bare disconnect is over as soon as the agent reconnects, so only
		// a window is listed as active.
		delete(t.active, key)
		if f.For > 0 {
			t.active[key] = ActiveFault{Agent: f.Agent, Fault: f.Fault, Since: now, Until: now.Add(f.For)}
		}
	case FaultRecover:
		l.restore()
		delete(t.active, key)
	default:
		return unknownFault(TargetAgent, f.Fault)
	}
	return nil
}

// clear forgets every active fault of target; t.mu must be held.
func (t *faultTable) clear(target string) {
	for k := range t.active {
		if k.target == target {
			delete(t.active, k)
		}
	}
}

// Faults returns the faults in force, oldest first.
func (t *faultTable) Faults() []ActiveFault {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	out := make([]ActiveFault, 0, len(t.active))
	for k, a := range t.active {
		if !a.Until.IsZero() && !now.Before(a.Until) {
			delete(t.active, k) // the window is over
			continue
		}
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b ActiveFault) int {
		return cmp.Or(a.Since.Compare(b.Since), cmp.Compare(a.Device+a.Agent, b.Device+b.Agent), cmp.Compare(a.Fault, b.Fault))
	})
	return out
}

func allowed(target, fault string) bool {
	for _, s := range Catalogue() {
		if s.Target == target && s.Fault == fault {
			return true
		}
	}
	return false
}

func unknownFault(target, fault string) error {
	var names []string
	for _, s := range Catalogue() {
		if s.Target == target {
			names = append(names, s.Fault)
		}
	}
	return fmt.Errorf("%w %q: %s faults are %s", ErrUnknownFault, fault, target, strings.Join(names, ", "))
}
