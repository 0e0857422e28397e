package live

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/citywatch/citywatch/wire"
)

// httpError is an answer for the client: a status and a message it can
// show. Internal causes are logged, not sent.
type httpError struct {
	code int
	msg  string
}

func errorf(code int, format string, args ...any) *httpError {
	return &httpError{code: code, msg: fmt.Sprintf(format, args...)}
}

// Stream is one camera's upstream as GET /api/live/streams shows it.
type Stream struct {
	Camera      string    `json:"camera"`
	Agent       string    `json:"agent"`
	Session     string    `json:"session"` // the signalling session with the agent
	State       string    `json:"state"`   // starting, running or lingering
	Viewers     int       `json:"viewers"`
	Since       time.Time `json:"since"`
	FPS         float64   `json:"fps"`          // over the last second
	BitrateKbps float64   `json:"bitrate_kbps"` // over the last second
	PacketsLost uint64    `json:"packets_lost"` // since the stream started
	Freezes     uint64    `json:"freezes"`      // since the stream started
	Frozen      bool      `json:"frozen"`       // no frame for over a second now
}

// StreamList is the answer of GET /api/live/streams.
type StreamList struct {
	Streams []Stream `json:"streams"`
}

// SessionList is the answer of GET /api/live/sessions.
type SessionList struct {
	Sessions []Session `json:"sessions"`
	Total    int       `json:"total"` // matching sessions in the log, before limit
}

// Paths the handler serves.
const (
	whepEndpoint = "/api/cameras/{id}/whep"
	whepResource = whepEndpoint + "/{session}"
)

// Handler serves the WHEP endpoints and the live video API:
//
//	POST    /api/cameras/{id}/whep            SDP offer → 201, SDP answer, Location
//	DELETE  /api/cameras/{id}/whep/{session}  end the session → 204
//	OPTIONS both                              CORS preflight, Accept-Post
//	GET     /api/live/sessions                the audit log, newest first
//	GET     /api/live/streams                 the camera streams now
//
// PATCH on a session answers 405: the hub supports neither trickle ICE nor
// ICE restarts, so offers must carry their candidates. Errors are JSON
// {"error": "..."}.
func (s *SFU) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+whepEndpoint, s.postOffer)
	mux.HandleFunc("OPTIONS "+whepEndpoint, s.preflight("POST, OPTIONS"))
	mux.HandleFunc(whepEndpoint, notAllowed("POST, OPTIONS"))
	mux.HandleFunc("DELETE "+whepResource, s.deleteSession)
	mux.HandleFunc("OPTIONS "+whepResource, s.preflight("DELETE, OPTIONS"))
	mux.HandleFunc(whepResource, notAllowed("DELETE, OPTIONS"))
	mux.HandleFunc("GET /api/live/sessions", s.listSessions)
	mux.HandleFunc("/api/live/sessions", notAllowed("GET, HEAD"))
	mux.HandleFunc("GET /api/live/streams", s.listStreams)
	mux.HandleFunc("/api/live/streams", notAllowed("GET, HEAD"))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, errorf(http.StatusNotFound, "no such endpoint: %s", clip(r.URL.Path)))
	})
	return s.cors(mux)
}

func (s *SFU) postOffer(w http.ResponseWriter, r *http.Request) {
	camera := r.PathValue("id")
	d, ok := s.fleet.Device(camera)
	switch {
	case !ok:
		writeError(w, errorf(http.StatusNotFound, "no camera %s", strconv.Quote(clip(camera))))
		return
	case d.Kind != wire.KindCamera:
		writeError(w, errorf(http.StatusBadRequest, "device %s is a %s, not a camera", camera, d.Kind))
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/sdp" {
		writeError(w, errorf(http.StatusUnsupportedMediaType, "the offer must be sent as Content-Type: application/sdp"))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxOffer))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			writeError(w, errorf(http.StatusRequestEntityTooLarge, "the offer is larger than %d KiB", maxOffer>>10))
		} else {
			writeError(w, errorf(http.StatusBadRequest, "cannot read the offer: %v", err))
		}
		return
	}
	if err := checkOffer(body); err != nil {
		writeError(w, errorf(http.StatusBadRequest, "%v", err))
		return
	}
	if d.Status == wire.StatusUnreachable {
		writeError(w, errorf(http.StatusServiceUnavailable, "agent %s of camera %s is offline", d.Agent, camera))
		return
	}
	api := s.webrtcAPI()
	if api == nil {
		writeError(w, errorf(http.StatusServiceUnavailable, "live video is not running"))
		return
	}
	v, answer, herr := s.newViewer(r.Context(), api, camera, string(body))
	if herr != nil {
		writeError(w, herr)
		return
	}
	v.who = sanitizeWho(r.Header.Get(userHeader))
	u, herr := s.join(v, d, Session{
		ID: v.id, Who: v.who, Camera: camera, Agent: d.Agent, Remote: remoteHost(r),
		UserAgent: sanitizeUA(r.UserAgent()), Start: v.joined,
	})
	if herr != nil {
		v.pc.Close()
		writeError(w, herr)
		return
	}
	v.watchState()
	select {
	case <-u.ready:
	case <-u.done:
		code := http.StatusServiceUnavailable
		if u.end.timeout {
			code = http.StatusGatewayTimeout
		}
		writeError(w, errorf(code, "%s", u.end.message(u.camera, u.agent)))
		return
	case <-r.Context().Done():
		v.close("the request was canceled")
		return
	}
	if v.closed() {
		writeError(w, errorf(http.StatusServiceUnavailable, "the session ended before it started"))
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/sdp")
	h.Set("Cache-Control", "no-store")
	h.Set("Location", "/api/cameras/"+url.PathEscape(camera)+"/whep/"+v.id)
	w.WriteHeader(http.StatusCreated)
	io.WriteString(w, answer)
	close(v.answered)
	s.log.Info("viewer joined", "device", camera, "session", v.id, "who", v.who, "remote", remoteHost(r), "cold", v.cold)
}

// webrtcAPI returns the API while the relay runs, or nil.
func (s *SFU) webrtcAPI() *webrtc.API {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.phase != phaseRunning {
		return nil
	}
	return s.api
}

// checkOffer refuses what is not an SDP offer with H.264 video before any
// peer connection is made for it.
func checkOffer(raw []byte) error {
	if !bytes.HasPrefix(raw, []byte("v=")) {
		return errors.New("malformed SDP: it must begin with v=0")
	}
	var sd sdp.SessionDescription
	if err := sd.Unmarshal(raw); err != nil {
		return fmt.Errorf("malformed SDP: %v", err)
	}
	for _, m := range sd.MediaDescriptions {
		if m.MediaName.Media != "video" || m.MediaName.Port.Value == 0 {
			continue
		}
		for _, a := range m.Attributes {
			if _, enc, ok := strings.Cut(a.Value, " "); a.Key == "rtpmap" && ok && strings.HasPrefix(strings.ToUpper(enc), "H264/90000") {
				return nil
			}
		}
	}
	return errors.New("offer has no H.264 video")
}

func (s *SFU) deleteSession(w http.ResponseWriter, r *http.Request) {
	camera, id := r.PathValue("id"), r.PathValue("session")
	v := s.viewer(id)
	if v == nil || v.camera != camera {
		writeError(w, errorf(http.StatusNotFound, "no session %s of camera %s", strconv.Quote(clip(id)), strconv.Quote(clip(camera))))
		return
	}
	if who := sanitizeWho(r.Header.Get(userHeader)); who != v.who {
		writeError(w, errorf(http.StatusForbidden, "session %s belongs to another viewer", id))
		return
	}
	v.close("ended by the viewer")
	w.WriteHeader(http.StatusNoContent)
}

func (s *SFU) listSessions(w http.ResponseWriter, r *http.Request) {
	q, herr := params(r, "camera", "limit")
	if herr != nil {
		writeError(w, herr)
		return
	}
	limit := 100
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > auditSize {
			writeError(w, errorf(http.StatusBadRequest, "limit %s is not a number from 1 to %d", strconv.Quote(clip(l)), auditSize))
			return
		}
		limit = n
	}
	sessions, total := s.audit.list(q.Get("camera"), limit)
	writeJSON(w, SessionList{Sessions: sessions, Total: total})
}

func (s *SFU) listStreams(w http.ResponseWriter, r *http.Request) {
	q, herr := params(r, "camera", "agent")
	if herr != nil {
		writeError(w, herr)
		return
	}
	out := StreamList{Streams: []Stream{}}
	for _, u := range s.streams() {
		st := u.describe()
		if (q.Get("camera") == "" || st.Camera == q.Get("camera")) && (q.Get("agent") == "" || st.Agent == q.Get("agent")) {
			out.Streams = append(out.Streams, st)
		}
	}
	slices.SortFunc(out.Streams, func(a, b Stream) int { return cmp.Compare(a.Camera, b.Camera) })
	writeJSON(w, out)
}

func (u *upstream) describe() Stream {
	u.mu.Lock()
	defer u.mu.Unlock()
	return Stream{
		Camera: u.camera, Agent: u.agent, Session: u.session, State: u.stateLocked(), Viewers: len(u.viewers),
		Since: u.started, FPS: u.rate.fps, BitrateKbps: u.rate.kbps,
		PacketsLost: u.stats.lost, Freezes: u.stats.freezes, Frozen: u.frozen,
	}
}

// params parses the query, refusing parameters not listed, so a misspelt
// filter never silently lists everything.
func params(r *http.Request, allowed ...string) (url.Values, *httpError) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, errorf(http.StatusBadRequest, "malformed query: %v", err)
	}
	for k := range q {
		if !slices.Contains(allowed, k) {
			return nil, errorf(http.StatusBadRequest, "unknown parameter %s; allowed: %s", strconv.Quote(clip(k)), strings.Join(allowed, ", "))
		}
	}
	return q, nil
}

// preflight answers OPTIONS: what the resource accepts, and the CORS
// preflight for pages of the allowed origins.
func (s *SFU) preflight(methods string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Allow", methods)
		if strings.HasPrefix(methods, "POST") {
			h.Set("Accept-Post", "application/sdp")
		}
		if s.allowOrigin(r.Header.Get("Origin")) != "" {
			h.Set("Access-Control-Allow-Methods", methods)
			h.Set("Access-Control-Allow-Headers", "Content-Type, Authorization, If-Match, "+userHeader)
			h.Set("Access-Control-Max-Age", "600")
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

// cors lets pages of the allowed origins read the answers, the Location
// header included.
func (s *SFU) cors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if allow := s.allowOrigin(r.Header.Get("Origin")); allow != "" {
			h := w.Header()
			h.Set("Access-Control-Allow-Origin", allow)
			h.Add("Vary", "Origin")
			h.Set("Access-Control-Expose-Headers", "Location, Accept-Post")
		}
		next.ServeHTTP(w, r)
	})
}

// allowOrigin returns the Access-Control-Allow-Origin value for origin, or
// "" when it is not allowed.
func (s *SFU) allowOrigin(origin string) string {
	switch {
	case origin == "":
		return ""
	case s.origins["*"]:
		return "*"
	case s.origins[strings.ToLower(origin)]:
		return origin
	}
	return ""
}

// parseOrigins checks the allowed origins and returns them in the form
// they are compared in.
func parseOrigins(list []string) (map[string]bool, error) {
	out := make(map[string]bool, len(list))
	var errs []error
	for _, o := range list {
		if o == "*" {
			out[o] = true
			continue
		}
		u, err := url.Parse(o)
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") ||
			(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			errs = append(errs, fmt.Errorf("allowed origin %q is not scheme://host[:port] or *", o))
			continue
		}
		out[strings.ToLower(u.Scheme+"://"+u.Host)] = true
	}
	return out, errors.Join(errs...)
}

func notAllowed(methods string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", methods)
		writeError(w, errorf(http.StatusMethodNotAllowed, "method %s not allowed; use %s", clip(r.Method), methods))
	}
}

// remoteHost is the client's address without the port.
func remoteHost(r *http.Request) string {
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}

type errorBody struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, e *httpError) {
	b, _ := json.Marshal(errorBody{e.msg}) // a struct of one string always encodes
	writeBody(w, e.code, b)
}

func writeJSON(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeError(w, errorf(http.StatusInternalServerError, "internal error"))
		return
	}
	writeBody(w, http.StatusOK, b)
}

func writeBody(w http.ResponseWriter, code int, b []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

// clip keeps client-chosen strings short in messages.
func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
