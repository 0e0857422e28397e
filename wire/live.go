package wire

// Live video signalling. The hub relays a camera's stream from the agent
// at its site: it sends the agent a WebRTC offer in a live_start command,
// the agent answers on its live channel, both trickle ICE candidates, and
// either side ends the session. Every message names its Session, so a
// duplicate or a late message of an ended session is recognised and
// ignored.
//
// The offer's video codecs say what the hub can relay: H.264, and for
// viewers that decode it H.265 beside it. The agent plays the camera's
// main stream if it is in one of them (H.264 first), else its sub-stream,
// and answers with that stream's codec; an agent that does not know H.265
// answers H.264 from the same offer. The answer's Stream says which of
// the camera's streams it plays.

// Command types for live video (hub → agent).
const (
	CommandLiveStart     = "live_start"     // Devices[0] is the camera; SDP is the hub's offer
	CommandLiveCandidate = "live_candidate" // Candidate is one of the hub's ICE candidates
	CommandLiveStop      = "live_stop"      // end the session; Reason says why
)

// LiveType says what a message on the live channel carries.
type LiveType string

// Live message types (agent → hub).
const (
	LiveAnswer    LiveType = "answer"    // SDP is the agent's answer to the offer
	LiveCandidate LiveType = "candidate" // Candidate is one of the agent's ICE candidates
	LiveStopped   LiveType = "stopped"   // the session ended at the agent; Reason says why
)

// Reasons a live session ends, besides the camera failure reasons.
const (
	ReasonLiveStopped   Reason = "stopped"     // the hub asked
	ReasonLiveHubGone   Reason = "hub_gone"    // the hub's peer connection failed or timed out
	ReasonLiveLimit     Reason = "limit"       // the agent's concurrent stream limit was reached
	ReasonLiveNoCamera  Reason = "no_camera"   // the device is not one of the agent's cameras
	ReasonLiveNegotiate Reason = "negotiation" // the offer could not be answered (no H.264 or H.265, bad SDP)
	// ReasonLiveCodec: the camera sends video, but in none of the codecs
	// the offer asks for (H.265 to a hub that asked for H.264 only, and
	// no H.264 sub-stream). It is not a fault of the camera: its status
	// does not change.
	ReasonLiveCodec Reason = "codec"
)

// LiveReasons lists the reasons only a live session ends for.
var LiveReasons = []Reason{ReasonLiveStopped, ReasonLiveHubGone, ReasonLiveLimit, ReasonLiveNoCamera, ReasonLiveNegotiate, ReasonLiveCodec}

// MaxSDPLen bounds an SDP offer or answer.
const MaxSDPLen = 16 << 10

// ICECandidate is one trickled ICE candidate, as RTCIceCandidateInit.
type ICECandidate struct {
	Candidate     string  `json:"candidate"`
	SDPMid        *string `json:"sdpMid,omitempty"`
	SDPMLineIndex *uint16 `json:"sdpMLineIndex,omitempty"`
}

// Live is a signalling message from an agent about one live session.
type Live struct {
	Header
	Session string   `json:"session"`
	Device  string   `json:"device"`
	Type    LiveType `json:"type"`
	SDP     string   `json:"sdp,omitempty"`
	// Stream is, in an answer, which of the camera's streams the agent
	// plays: StreamMain or StreamSub; agents before H.265 say nothing.
	Stream    StreamRole    `json:"stream,omitempty"`
	Candidate *ICECandidate `json:"candidate,omitempty"`
	Reason    Reason        `json:"reason,omitempty"`
	Detail    string        `json:"detail,omitempty"`
}
