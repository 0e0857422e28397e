// Package live is the hub's live video relay, a selective forwarding unit
// (SFU). Viewers connect with WHEP: they POST an SDP offer to
// /api/cameras/{id}/whep and get the answer and a session URL to DELETE
// when done, so any WHEP player works. For each camera watched the hub
// keeps one upstream: a WebRTC peer connection to the agent at the
// camera's site, negotiated over MQTT (wire's live_start, answer,
// candidate, stopped, live_stop). The first viewer starts it; after the
// last leaves it lingers (Config.Linger) and then stops, so a site uplink
// carries only video somebody watches, and Config.MaxUpstreamsPerAgent
// caps what one uplink carries.
//
// Viewers get the best stream they decode: a viewer whose offer has H.265
// shares an upstream that asks the agent for H.265 beside H.264 (an H.265
// main stream comes as it is), one with H.264 only an upstream that asks
// for H.264 (an H.265 camera's H.264 sub-stream). So a camera has one
// upstream per codec at most, and only when viewers of both kinds watch a
// camera whose main stream is H.265: an upstream that turns out to carry
// H.264 main or sub-stream video serves both kinds.
//
// The upstream's reader splits packets over the WebRTC packet size
// (wire/rtph264; earlier agents forward the camera's 1,462-byte packets),
// parses H.264 or H.265 RTP just enough to find keyframes, keeps the current group
// of pictures, and hands every access unit to each viewer's bounded
// queue; a writer goroutine per viewer sends the GOP first, then live
// packets, so a viewer's first picture is a keyframe and a slow viewer
// never holds up the others. The writer sends an access unit's packets
// together: they wait in the viewer's outbox on the way to the socket and
// leave in one system call (outbox.go). The writer also answers the
// viewer's NACKs. Viewers' picture loss reports become keyframe requests
// upstream, at most one per Config.KeyframeInterval. A stream that fails
// ends its viewers' sessions and, when the camera gave no picture, marks
// the camera degraded in the fleet. Health goes to /metrics and, per
// stream, to the metric store. Every viewer is an authenticated caller
// limited to the cameras of its scope and to Config.MaxSessionsPerAccount
// sessions at once; each session's start and end (with what it carried)
// go to the audit trail, and the sessions in progress are listed at
// /api/live/sessions.
package live

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/citywatch/citywatch/hub/auth"
	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/hub/metrics"
	"github.com/citywatch/citywatch/hub/metricstore"
	"github.com/citywatch/citywatch/wire"
	"github.com/citywatch/citywatch/wire/rtph264"
)

// Config holds the relay's settings. Zero values take the defaults noted.
type Config struct {
	// Linger is how long an upstream stays after its last viewer left, so
	// that switching views or reloading a page does not restart the
	// camera's stream. 10 s.
	Linger time.Duration
	// MaxUpstreamsPerAgent caps the streams one agent sends at once, to
	// protect thin site uplinks. 4.
	MaxUpstreamsPerAgent int
	// UDPPort is the one UDP port all ICE traffic uses (an ICE UDP mux),
	// which is what firewalls want; 0 gives every peer connection its own
	// ephemeral ports.
	UDPPort int
	// LoopbackOnly restricts ICE to 127.0.0.1, for tests.
	LoopbackOnly bool
	// PublicIPs replace the host's addresses in ICE candidates, for a hub
	// behind 1:1 NAT.
	PublicIPs []string
	// UpstreamTimeout bounds a stream's start, from live_start to the first
	// keyframe, and a viewer's connection after its answer. 10 s.
	UpstreamTimeout time.Duration
	// KeyframeInterval is the least time between two keyframe requests to
	// an agent for one stream. 1 s.
	KeyframeInterval time.Duration
	// StallTimeout ends a watched stream that brought no packet for this
	// long. 5 s.
	StallTimeout time.Duration
	// StatsInterval is how often each stream's statistics go to the metric
	// store. 10 s.
	StatsInterval time.Duration
	// AllowOrigins lists the web origins ("https://player.example.org", or
	// "*" for any) whose pages may use the WHEP endpoints; the hub's own
	// pages need no entry.
	AllowOrigins []string
	// MaxSessionsPerAccount caps the viewing sessions one account (or
	// token, or viewing link's maker) holds at once, so no caller can take
	// every site's uplink. 25: a 16-tile wall, pop-ups and a spare.
	MaxSessionsPerAccount int
}

// Defaults.
const (
	DefaultLinger               = 10 * time.Second
	DefaultMaxUpstreamsPerAgent = 4
	DefaultUpstreamTimeout      = 10 * time.Second
	DefaultKeyframeInterval     = time.Second
	DefaultStallTimeout         = 5 * time.Second
	DefaultStatsInterval        = 10 * time.Second
	DefaultMaxSessions          = 25
)

// Sizes that need no tuning.
const (
	gopBytes    = 4 << 20 // per upstream: several seconds of a 5 Mbit/s camera
	viewerQueue = 64      // access units: two seconds and more
	maxUnit     = 128     // packets handed to viewers at once: a large keyframe
	maxOffer    = 64 << 10
)

// Fleet is what the relay needs of the fleet: the camera and its agent,
// and a place to say a camera's stream failed (*fleet.Registry is one).
type Fleet interface {
	Device(id string) (fleet.Device, bool)
	SetStreamFault(device string, reason wire.Reason, detail string)
	ClearStreamFault(device string)
}

// Commands sends a command to an agent without waiting for it to arrive
// (*ingest.Ingest is one).
type Commands interface {
	SendCommand(agent string, cmd wire.Command) error
}

// StatWriter stores stream statistics without blocking
// (*metricstore.Store is one).
type StatWriter interface {
	WriteLive(metricstore.LiveStat)
}

// Deps are the relay's collaborators.
type Deps struct {
	Log      *slog.Logger      // nil discards
	Metrics  *metrics.Registry // required
	Fleet    Fleet             // required
	Commands Commands          // required
	Store    StatWriter        // nil: statistics are not stored
	Audit    Auditor           // required: every viewing session is audited
}

// SFU is the live video relay. Create it with New, serve Handler, feed it
// the agents' signalling with HandleLive, and Run it.
type SFU struct {
	cfg      Config
	log      *slog.Logger
	fleet    Fleet
	commands Commands
	store    StatWriter
	m        *instruments
	audit    Auditor
	origins  map[string]bool
	limit    *auth.Limiter // sessions per account

	mu         sync.Mutex
	phase      phase
	ctx        context.Context // Run's, for upstreams; set with apis
	apis       *apis
	upstreams  map[streamKey]*upstream // none stopped; one may serve both keys of its camera
	signalling map[string]*upstream    // by upstream session id
	perAgent   map[string]int          // upstreams by agent
	viewers    map[string]*viewer      // by session id
	wg         sync.WaitGroup          // every goroutine the relay starts; Add under mu while running
}

// streamKey finds the upstream for a camera's viewers: class is the codec
// they want first (H.265 for viewers that decode it, else H.264).
type streamKey struct {
	camera string
	class  rtph264.Codec
}

type phase int

const (
	phaseNew phase = iota
	phaseRunning
	phaseStopped
)

// New checks cfg and deps and returns a relay that has started nothing.
func New(cfg Config, deps Deps) (*SFU, error) {
	cfg = withDefaults(cfg)
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if cfg.Linger < 0 || cfg.UpstreamTimeout < 0 || cfg.KeyframeInterval < 0 || cfg.StallTimeout < 0 || cfg.StatsInterval < 0 {
		bad("durations must not be negative")
	}
	if cfg.MaxUpstreamsPerAgent < 0 {
		bad("max upstreams per agent %d is negative", cfg.MaxUpstreamsPerAgent)
	}
	if cfg.UDPPort < 0 || cfg.UDPPort > 65535 {
		bad("UDP port %d out of range", cfg.UDPPort)
	}
	for _, ip := range cfg.PublicIPs {
		if net.ParseIP(ip).To4() == nil {
			bad("public IP %q is not an IPv4 address", ip)
		}
	}
	origins, err := parseOrigins(cfg.AllowOrigins)
	if err != nil {
		errs = append(errs, err)
	}
	switch {
	case deps.Metrics == nil:
		bad("Deps.Metrics is required")
	case deps.Fleet == nil:
		bad("Deps.Fleet is required")
	case deps.Commands == nil:
		bad("Deps.Commands is required")
	case deps.Audit == nil:
		bad("Deps.Audit is required")
	}
	if cfg.MaxSessionsPerAccount < 0 {
		bad("max sessions per account %d is negative", cfg.MaxSessionsPerAccount)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("live: %w", err)
	}
	if deps.Log == nil {
		deps.Log = slog.New(slog.DiscardHandler)
	}
	s := &SFU{
		cfg:        cfg,
		log:        deps.Log.With("component", "live"),
		fleet:      deps.Fleet,
		commands:   deps.Commands,
		store:      deps.Store,
		audit:      deps.Audit,
		origins:    origins,
		limit:      auth.NewLimiter(cfg.MaxSessionsPerAccount),
		upstreams:  map[streamKey]*upstream{},
		signalling: map[string]*upstream{},
		perAgent:   map[string]int{},
		viewers:    map[string]*viewer{},
	}
	s.m = newInstruments(deps.Metrics, s)
	return s, nil
}

func withDefaults(c Config) Config {
	c.Linger = cmp.Or(c.Linger, DefaultLinger)
	c.MaxUpstreamsPerAgent = cmp.Or(c.MaxUpstreamsPerAgent, DefaultMaxUpstreamsPerAgent)
	c.UpstreamTimeout = cmp.Or(c.UpstreamTimeout, DefaultUpstreamTimeout)
	c.KeyframeInterval = cmp.Or(c.KeyframeInterval, DefaultKeyframeInterval)
	c.StallTimeout = cmp.Or(c.StallTimeout, DefaultStallTimeout)
	c.StatsInterval = cmp.Or(c.StatsInterval, DefaultStatsInterval)
	c.MaxSessionsPerAccount = cmp.Or(c.MaxSessionsPerAccount, DefaultMaxSessions)
	return c
}

// Run opens the ICE UDP port (if configured) and relays until ctx ends;
// then it ends every session and stream, telling the agents, and returns
// once every peer connection and goroutine is gone. It may be called once.
func (s *SFU) Run(ctx context.Context) error {
	apis, err := newAPIs(s.cfg, s.log)
	if err != nil {
		return fmt.Errorf("live: %w", err)
	}
	defer apis.close()
	s.mu.Lock()
	if s.phase != phaseNew {
		s.mu.Unlock()
		return errors.New("live: Run called twice")
	}
	s.phase, s.ctx, s.apis = phaseRunning, ctx, apis
	s.mu.Unlock()
	s.log.Info("relaying live video", "udp_port", s.cfg.UDPPort, "linger", s.cfg.Linger,
		"max_upstreams_per_agent", s.cfg.MaxUpstreamsPerAgent)

	<-ctx.Done()
	s.mu.Lock()
	s.phase = phaseStopped
	s.mu.Unlock()
	// Each upstream sees ctx end, ends its viewers and tells its agent.
	s.wg.Wait()
	return nil
}

// HandleLive takes one signalling message from an agent, already accepted
// by the fleet (the device is the agent's). It never blocks: a message for
// a session that has ended, or that does not match the session's agent
// and camera, is dropped.
func (s *SFU) HandleLive(m wire.Live) {
	s.mu.Lock()
	u := s.signalling[m.Session]
	s.mu.Unlock()
	if u == nil || u.agent != m.Agent || u.camera != m.Device {
		s.log.Debug("signalling for no current session", "agent", m.Agent, "session", m.Session, "type", m.Type)
		return
	}
	select {
	case u.events <- m:
	default:
		s.log.Warn("signalling queue full; message dropped", "agent", m.Agent, "device", m.Device, "type", m.Type)
	}
}

// join attaches v to the upstream of its camera for the codecs it
// decodes, starting one when there is none, and starts recording its
// session. The upstream is ready once u.ready is closed, or has ended
// when u.done is.
func (s *SFU) join(v *viewer, d fleet.Device, rec *record) (*upstream, *httpError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.phase != phaseRunning {
		return nil, errorf(503, "live video is not running")
	}
	u, key := s.upstreamFor(d.ID, v.accepts)
	if u == nil {
		var prev *upstream
		if s.perAgent[d.Agent] >= s.cfg.MaxUpstreamsPerAgent {
			// An upstream nobody watches gives way at once.
			if prev = s.idleUpstream(d.Agent); prev == nil {
				return nil, errorf(503, "site uplink limit: %d streams from agent %s already", s.cfg.MaxUpstreamsPerAgent, d.Agent)
			}
			s.removeLocked(prev)
			prev.halt(ending{reason: wire.ReasonLiveStopped, detail: "its uplink slot went to camera " + d.ID})
		}
		u = newUpstream(s, d, key.class, prev)
		s.upstreams[key], s.signalling[u.session] = u, u
		s.perAgent[u.agent]++
		ctx := s.ctx
		s.wg.Go(func() { u.run(ctx) })
	}
	v.rec = rec
	u.attach(v)
	s.viewers[v.id] = v
	s.m.sessions.With(d.ID).Inc()
	s.wg.Go(v.writeLoop)
	return u, nil
}

// upstreamFor returns the upstream that serves a viewer of camera that
// decodes accepts, or nil and the key of the one to start. s.mu is held.
func (s *SFU) upstreamFor(camera string, accepts []rtph264.Codec) (*upstream, streamKey) {
	h264, h265 := streamKey{camera, rtph264.H264}, streamKey{camera, rtph264.H265}
	if !slices.Contains(accepts, rtph264.H265) {
		return s.upstreams[h264], h264
	}
	if u := s.upstreams[h265]; u != nil {
		return u, h265
	}
	// A camera whose main stream is H.264 sends that for H.265 viewers
	// too: the agent takes H.264 first.
	if u := s.upstreams[h264]; u != nil && slices.Contains(accepts, rtph264.H264) && u.playsMain() {
		return u, h264
	}
	return nil, h265
}

// alias lets u, which asked for H.265 and carries H.264, serve the H.264
// viewers of its camera too, unless they have an upstream: for H.264 alone
// the agent would play the same stream.
func (s *SFU) alias(u *upstream) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h264 := streamKey{u.camera, rtph264.H264}
	if s.upstreams[streamKey{u.camera, u.class}] == u && s.upstreams[h264] == nil {
		s.upstreams[h264] = u
	}
}

// idleUpstream returns one of agent's upstreams without viewers, or nil.
func (s *SFU) idleUpstream(agent string) *upstream {
	for _, u := range s.upstreams {
		if u.agent == agent && u.viewerCount() == 0 {
			return u
		}
	}
	return nil
}

// remove forgets u: new viewers of its camera get a new upstream, and late
// signalling for it is dropped. It may be called more than once.
func (s *SFU) remove(u *upstream) {
	s.mu.Lock()
	s.removeLocked(u)
	s.mu.Unlock()
}

func (s *SFU) removeLocked(u *upstream) {
	removed := false
	for _, class := range []rtph264.Codec{rtph264.H264, rtph264.H265} {
		if k := (streamKey{u.camera, class}); s.upstreams[k] == u {
			delete(s.upstreams, k)
			removed = true
		}
	}
	if !removed {
		return
	}
	delete(s.signalling, u.session)
	if s.perAgent[u.agent]--; s.perAgent[u.agent] == 0 {
		delete(s.perAgent, u.agent)
	}
	u.markStopped()
}

// leave forgets v; its upstream starts lingering if v was the last viewer.
func (s *SFU) leave(v *viewer) {
	s.mu.Lock()
	delete(s.viewers, v.id)
	s.mu.Unlock()
	v.up.detach(v)
}

// EndSessions ends at once the viewing sessions opened with any of the
// given login sessions (after a logout, a disabled account, a reset
// password).
func (s *SFU) EndSessions(ids []string) {
	var end []*viewer
	s.mu.Lock()
	for _, v := range s.viewers {
		if v.rec != nil && slices.Contains(ids, v.rec.p.Session) {
			end = append(end, v)
		}
	}
	s.mu.Unlock()
	for _, v := range end {
		v.close("the login session ended")
	}
}

// sessions returns the sessions in progress.
func (s *SFU) sessions() []*record {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*record, 0, len(s.viewers))
	for _, v := range s.viewers {
		out = append(out, v.rec)
	}
	return out
}

// viewer returns the session id's viewer, or nil.
func (s *SFU) viewer(id string) *viewer {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.viewers[id]
}

// streams returns every current upstream, for the API.
func (s *SFU) streams() []*upstream {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*upstream, 0, len(s.upstreams))
	for _, u := range s.upstreams {
		if !slices.Contains(out, u) { // one serving both keys
			out = append(out, u)
		}
	}
	return out
}
