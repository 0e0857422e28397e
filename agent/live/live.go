// Package live streams a camera to the hub over WebRTC, on demand. The hub
// sends an SDP offer in a live_start command; the agent pulls the camera's
// RTSP stream with gortsplib (the main stream in a codec the offer asks
// for, H.264 or H.265, else the sub-stream), answers with that codec on
// its live channel and forwards the RTP packets (no transcoding; packets
// over the WebRTC packet size of wire/rtph264 are split) to a pion
// PeerConnection,
// until the hub stops the session, the camera fails or the hub's peer goes
// away; then it says why in a stopped message. Every message names its
// session, so duplicated and late signalling is recognised and ignored.
package live

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"

	"github.com/citywatch/citywatch/agent/secret"
	"github.com/citywatch/citywatch/wire"
)

// Defaults for the zero values of Options.
const (
	DefaultMaxSessions    = 4
	DefaultRTSPTimeout    = 5 * time.Second
	DefaultNoFrameTimeout = 5 * time.Second
	DefaultHubTimeout     = 10 * time.Second
)

// endedMemory is how many ended session ids are remembered, so that a
// command redelivered after its session ended (QoS 1 may deliver twice) is
// ignored instead of starting the stream again.
const endedMemory = 1024

// Options are the manager's settings and dependencies.
type Options struct {
	// Cameras returns the RTSP streams of a device; false when the device
	// is not one of the agent's cameras.
	Cameras func(device string) (Streams, bool)
	// Publish sends a message on the agent's live channel; it must not
	// block. The uplink fills in the header.
	Publish func(wire.Live)
	// MaxSessions bounds concurrent streams; default DefaultMaxSessions.
	MaxSessions int
	// PortMin and PortMax bound the UDP ports of ICE candidates, for site
	// firewalls; both zero means ephemeral ports.
	PortMin, PortMax uint16
	// LoopbackOnly offers loopback candidates only: for a hub on the same
	// host, and tests.
	LoopbackOnly bool
	// RTSPTimeout bounds the TCP connect and each RTSP request to the
	// camera; default DefaultRTSPTimeout.
	RTSPTimeout time.Duration
	// NoFrameTimeout ends a session whose camera sends no RTP for this
	// long (no_stream); default DefaultNoFrameTimeout.
	NoFrameTimeout time.Duration
	// HubTimeout is how long the hub's peer has to connect after the
	// answer, and how long it may stay disconnected, before the session
	// ends with hub_gone; default DefaultHubTimeout.
	HubTimeout time.Duration
	Logger     *slog.Logger
}

// Streams are a camera's RTSP streams: Main, and optionally Sub, a
// sub-stream live view falls back to when Main is in a codec the hub did
// not ask for (H.265 main streams with an H.264 sub-stream are what most
// cameras installed today have, and not every browser decodes H.265).
type Streams struct {
	Main, Sub secret.URL
	// FindSub looks for an H.264 sub-stream when Sub is empty (the
	// camera's ONVIF profiles); nil when there is nowhere to look.
	FindSub func(ctx context.Context) (secret.URL, error)
}

// Stats are the manager's counters.
type Stats struct {
	Active  int                    // sessions running now
	Started uint64                 // sessions accepted
	Ended   map[wire.Reason]uint64 // sessions ended or refused, by reason (stopped is the normal end)
	Packets uint64                 // RTP packets forwarded to the hub
	Bytes   uint64                 // their payload bytes
	Unsplit uint64                 // camera packets dropped: too large, and malformed or not splittable
	PLIs    uint64                 // keyframe requests (PLI, FIR) received from the hub
	// CameraPLIs counts keyframe requests passed on to cameras, at most
	// one per keyframeRequestInterval and session.
	CameraPLIs uint64
	Ignored    uint64 // commands for unknown or ended sessions, and duplicate starts
}

// Manager runs the live sessions of one agent.
type Manager struct {
	opts     Options
	log      *slog.Logger
	settings webrtc.SettingEngine
	wg       sync.WaitGroup // session goroutines

	started, packets, bytes, unsplit, plis, cameraPLIs, ignored atomic.Uint64

	mu       sync.Mutex // guards the fields below
	sessions map[string]*session
	ended    map[string]struct{} // ids of ended sessions, see endedMemory
	endedIDs []string            // the same ids, oldest first
	endedBy  map[wire.Reason]uint64
	closed   bool // Run has ended the sessions; no new ones
}

// New checks opts and fills in defaults; it starts nothing.
func New(opts Options) (*Manager, error) {
	if opts.Cameras == nil || opts.Publish == nil {
		return nil, errors.New("live: Cameras and Publish are required")
	}
	if opts.MaxSessions < 0 || opts.RTSPTimeout < 0 || opts.NoFrameTimeout < 0 || opts.HubTimeout < 0 {
		return nil, errors.New("live: negative limit or timeout")
	}
	if (opts.PortMin == 0) != (opts.PortMax == 0) || opts.PortMin > opts.PortMax {
		return nil, fmt.Errorf("live: UDP port range %d-%d is not a range", opts.PortMin, opts.PortMax)
	}
	opts.MaxSessions = cmp.Or(opts.MaxSessions, DefaultMaxSessions)
	opts.RTSPTimeout = cmp.Or(opts.RTSPTimeout, DefaultRTSPTimeout)
	opts.NoFrameTimeout = cmp.Or(opts.NoFrameTimeout, DefaultNoFrameTimeout)
	opts.HubTimeout = cmp.Or(opts.HubTimeout, DefaultHubTimeout)
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	log := opts.Logger.With("component", "live")

	var se webrtc.SettingEngine
	se.LoggerFactory = pionLogs{log: log}
	// mDNS candidates hide addresses from browsers; between agent and hub
	// they only cost a multicast query per candidate.
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	if opts.LoopbackOnly {
		se.SetIncludeLoopbackCandidate(true)
		se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	}
	if opts.PortMin != 0 {
		if err := se.SetEphemeralUDPPortRange(opts.PortMin, opts.PortMax); err != nil {
			return nil, fmt.Errorf("live: %w", err)
		}
	}
	return &Manager{
		opts:     opts,
		log:      log,
		settings: se,
		sessions: make(map[string]*session),
		ended:    make(map[string]struct{}),
		endedBy:  make(map[wire.Reason]uint64),
	}, nil
}

// Run waits for ctx to end, then ends every session (reason stopped) and
// returns once each has released its camera and peer connection and
// published its stopped message. Commands may arrive before Run is
// called; after it returns, live_start is refused.
func (m *Manager) Run(ctx context.Context) error {
	<-ctx.Done()
	m.mu.Lock()
	m.closed = true
	for _, s := range m.sessions {
		s.end(wire.ReasonLiveStopped, "the agent is shutting down")
	}
	m.mu.Unlock()
	m.wg.Wait()
	return nil
}

// Handle carries out a live command. It has the signature of an uplink
// command handler and, like the uplink, expects commands one at a time
// and in order. It returns quickly: the answer and the stream follow on
// the session's own goroutine.
func (m *Manager) Handle(_ context.Context, cmd wire.Command) {
	switch cmd.Type {
	case wire.CommandLiveStart:
		m.start(cmd)
	case wire.CommandLiveCandidate:
		if s := m.session(cmd); s != nil {
			s.addCandidate(*cmd.Candidate)
		}
	case wire.CommandLiveStop:
		if s := m.session(cmd); s != nil {
			detail := "stopped by the hub"
			if cmd.Reason != "" {
				detail += ": " + string(cmd.Reason)
			}
			s.end(wire.ReasonLiveStopped, detail)
		}
	default:
		m.ignore(cmd, "not a live command")
	}
}

// Stats returns the current counters.
func (m *Manager) Stats() Stats {
	m.mu.Lock()
	active, ended := len(m.sessions), maps.Clone(m.endedBy)
	m.mu.Unlock()
	return Stats{
		Active:     active,
		Started:    m.started.Load(),
		Ended:      ended,
		Packets:    m.packets.Load(),
		Bytes:      m.bytes.Load(),
		Unsplit:    m.unsplit.Load(),
		PLIs:       m.plis.Load(),
		CameraPLIs: m.cameraPLIs.Load(),
		Ignored:    m.ignored.Load(),
	}
}

// start takes a live_start: refusals are published at once; an accepted
// offer gets a session, which opens the camera and answers on its own
// goroutine, keeping the hub's candidates until it has the peer
// connection.
func (m *Manager) start(cmd wire.Command) {
	id, device := cmd.Session, cmd.Devices[0]
	m.mu.Lock()
	_, active := m.sessions[id]
	_, ended := m.ended[id]
	closed, running := m.closed, len(m.sessions)
	m.mu.Unlock()
	if active || ended {
		m.ignore(cmd, "duplicate live_start")
		return
	}
	streams, ok := m.opts.Cameras(device)
	switch {
	case closed:
		m.refuse(id, device, wire.ReasonLiveStopped, "the agent is shutting down")
		return
	case !ok:
		m.refuse(id, device, wire.ReasonLiveNoCamera, "not one of the agent's cameras")
		return
	case running >= m.opts.MaxSessions:
		m.refuse(id, device, wire.ReasonLiveLimit, fmt.Sprintf("the agent's limit of %d live streams is reached", m.opts.MaxSessions))
		return
	}

	codecs, err := offerCodecs(cmd.SDP)
	if err != nil {
		m.refuse(id, device, wire.ReasonLiveNegotiate, err.Error())
		return
	}
	s := newSession(m, id, device, streams, cmd.SDP, codecs)
	m.mu.Lock()
	if m.closed { // Run ended the sessions meanwhile
		m.mu.Unlock()
		s.close()
		m.refuse(id, device, wire.ReasonLiveStopped, "the agent is shutting down")
		return
	}
	m.sessions[id] = s
	m.wg.Add(1)
	m.mu.Unlock()
	m.started.Add(1)
	s.log.Info("live session started")
	go s.run()
}

// session returns the running session a command names, or nil (counted)
// for a session that ended or never was.
func (m *Manager) session(cmd wire.Command) *session {
	m.mu.Lock()
	s := m.sessions[cmd.Session]
	m.mu.Unlock()
	if s == nil || s.ctx.Err() != nil {
		m.ignore(cmd, "no such session")
		return nil
	}
	return s
}

func (m *Manager) ignore(cmd wire.Command, why string) {
	m.ignored.Add(1)
	m.log.Debug("live command ignored", "why", why, "type", cmd.Type, "session", cmd.Session, "command", cmd.ID)
}

// refuse ends a session that never ran.
func (m *Manager) refuse(id, device string, reason wire.Reason, detail string) {
	m.log.Info("live session refused", "session", id, "device", device, "reason", reason, "detail", detail)
	m.finished(id, device, reason, detail)
}

// finished records the end of a session and tells the hub. The session
// leaves the table first, so a hub that starts another on receiving the
// message is not refused for the limit.
func (m *Manager) finished(id, device string, reason wire.Reason, detail string) {
	m.mu.Lock()
	delete(m.sessions, id)
	if len(m.endedIDs) == endedMemory {
		delete(m.ended, m.endedIDs[0])
		m.endedIDs = m.endedIDs[1:]
	}
	m.ended[id] = struct{}{}
	m.endedIDs = append(m.endedIDs, id)
	m.endedBy[reason]++
	m.mu.Unlock()
	m.opts.Publish(wire.Live{Session: id, Device: device, Type: wire.LiveStopped, Reason: reason, Detail: truncate(detail, wire.MaxDetailLen)})
}

// truncate shortens s to at most n bytes without splitting a character.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
