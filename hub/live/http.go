package live

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/citywatch/citywatch/hub/audit"
	"github.com/citywatch/citywatch/hub/auth"
	"github.com/citywatch/citywatch/wire"
	"github.com/citywatch/citywatch/wire/rtph264"
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

// SessionList is the answer of GET /api/live/sessions: the sessions in
// progress the caller may see, newest first.
type SessionList struct {
	Sessions []Session `json:"sessions"`
}

// Paths the relay serves.
const (
	whepEndpoint = "/api/cameras/{id}/whep"
	whepResource = whepEndpoint + "/{session}"
)

// Routes are the WHEP endpoints and the live video API, with the
// permission each needs:
//
//	POST    /api/cameras/{id}/whep            SDP offer → 201, SDP answer, Location (live.view; a viewing link's ?token= too)
//	DELETE  /api/cameras/{id}/whep/{session}  end the session → 204 (its viewer, or live.monitor)
//	OPTIONS both                              CORS preflight, Accept-Post (public: preflights carry no credentials)
//	GET     /api/live/sessions                sessions in progress (live.monitor)
//	GET     /api/live/streams                 the camera streams now (live.monitor)
//
// PATCH on a session answers 405: the hub supports neither trickle ICE nor
// ICE restarts, so offers must carry their candidates. Errors are JSON
// {"error": "...", "code": "..."}.
func (s *SFU) Routes() []auth.Route {
	route := func(method, path string, perm auth.Permission, h http.HandlerFunc) auth.Route {
		return auth.Route{Method: method, Path: path, Perm: perm, Handler: s.cors(h), QueryToken: perm == auth.LiveView}
	}
	return []auth.Route{
		route(http.MethodPost, whepEndpoint, auth.LiveView, s.postOffer),
		route(http.MethodOptions, whepEndpoint, auth.Public, s.preflight("POST, OPTIONS")),
		route(http.MethodDelete, whepResource, auth.LiveView, s.deleteSession),
		route(http.MethodOptions, whepResource, auth.Public, s.preflight("DELETE, OPTIONS")),
		route(http.MethodGet, "/api/live/sessions", auth.LiveMonitor, s.listSessions),
		route(http.MethodGet, "/api/live/streams", auth.LiveMonitor, s.listStreams),
	}
}

func (s *SFU) postOffer(w http.ResponseWriter, r *http.Request) {
	p := auth.From(r.Context())
	camera := r.PathValue("id")
	d, ok := s.fleet.Device(camera)
	switch {
	case !ok || !p.Sees(d.District, d.Site) || (p.Camera != "" && p.Camera != camera):
		// A camera outside the caller's scope, or not the one its viewing
		// link is for, does not exist for it; the attempt is recorded.
		if ok {
			s.auditStart(p, camera, "", audit.Denied, "outside the caller's scope or viewing link")
		}
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
	accepts, err := checkOffer(body)
	if err != nil {
		writeError(w, errorf(http.StatusBadRequest, "%v", err))
		return
	}
	if d.Status == wire.StatusUnreachable {
		writeError(w, errorf(http.StatusServiceUnavailable, "agent %s of camera %s is offline", d.Agent, camera))
		return
	}
	release, ok := s.limit.Acquire(p.Name)
	if !ok {
		msg := fmt.Sprintf("%s already watches %d cameras; close one first", p.Name, s.limit.Max())
		s.auditStart(p, camera, "", audit.Denied, msg)
		writeError(w, errorf(http.StatusTooManyRequests, "%s", msg))
		return
	}
	api := s.webrtcAPI()
	if api == nil {
		release()
		writeError(w, errorf(http.StatusServiceUnavailable, "live video is not running"))
		return
	}
	v, herr := s.newViewer(api, camera, string(body), accepts)
	if herr != nil {
		release()
		s.auditStart(p, camera, "", audit.Failure, herr.msg)
		writeError(w, herr)
		return
	}
	v.release = release
	rec := &record{p: p, s: Session{
		ID: v.id, Who: p.Name, Via: p.Via, Camera: camera, Agent: d.Agent, Remote: p.Remote,
		UserAgent: sanitizeUA(r.UserAgent()), Start: v.joined,
	}}
	u, herr := s.join(v, d, rec)
	if herr != nil {
		release()
		v.pc.Close()
		s.auditStart(p, camera, "", audit.Failure, herr.msg)
		writeError(w, herr)
		return
	}
	s.auditStart(p, camera, v.id, audit.Success, "")
	v.watchState()
	select {
	case <-u.ready:
	case <-u.done:
		code := http.StatusServiceUnavailable
		switch {
		case u.end.timeout:
			code = http.StatusGatewayTimeout
		case u.end.reason == wire.ReasonLiveCodec:
			// Asking again will not help, and the camera is not at fault.
			code = http.StatusUnsupportedMediaType
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
	answer, herr := v.answer(r.Context(), u.videoCodec())
	if herr != nil {
		v.close(herr.msg)
		writeError(w, herr)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/sdp")
	h.Set("Cache-Control", "no-store")
	loc := "/api/cameras/" + url.PathEscape(camera) + "/whep/" + v.id
	if p.Via == auth.ViaLink {
		// A player that cannot send headers ends its session with the
		// same link it began it with.
		loc += "?token=" + url.QueryEscape(r.URL.Query().Get("token"))
	}
	h.Set("Location", loc)
	w.WriteHeader(http.StatusCreated)
	io.WriteString(w, answer)
	close(v.answered)
	s.log.Info("viewer joined", "device", camera, "session", v.id, "who", p.Name, "via", p.Via, "remote", p.Remote, "cold", v.cold)
}

// webrtcAPI returns the viewers' API while the relay runs, or nil.
func (s *SFU) webrtcAPI() *webrtc.API {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.phase != phaseRunning {
		return nil
	}
	return s.apis.viewer
}

// checkOffer refuses what is not an SDP offer with H.264 or H.265 video
// before any peer connection is made for it, and returns which of the two
// it has, in the offer's order.
func checkOffer(raw []byte) ([]rtph264.Codec, error) {
	if !bytes.HasPrefix(raw, []byte("v=")) {
		return nil, errors.New("malformed SDP: it must begin with v=0")
	}
	var sd sdp.SessionDescription
	if err := sd.Unmarshal(raw); err != nil {
		return nil, fmt.Errorf("malformed SDP: %v", err)
	}
	var accepts []rtph264.Codec
	for _, m := range sd.MediaDescriptions {
		if m.MediaName.Media != "video" || m.MediaName.Port.Value == 0 {
			continue
		}
		for _, a := range m.Attributes {
			_, enc, ok := strings.Cut(a.Value, " ")
			if a.Key != "rtpmap" || !ok {
				continue
			}
			for _, c := range []struct {
				rtpmap string
				codec  rtph264.Codec
			}{{"H264/90000", rtph264.H264}, {"H265/90000", rtph264.H265}} {
				if strings.HasPrefix(strings.ToUpper(enc), c.rtpmap) && !slices.Contains(accepts, c.codec) {
					accepts = append(accepts, c.codec)
				}
			}
		}
	}
	if len(accepts) == 0 {
		return nil, errors.New("offer has no H.264 or H.265 video")
	}
	return accepts, nil
}

func (s *SFU) deleteSession(w http.ResponseWriter, r *http.Request) {
	p := auth.From(r.Context())
	camera, id := r.PathValue("id"), r.PathValue("session")
	v := s.viewer(id)
	if v == nil || v.camera != camera || !s.mayEnd(p, v.rec) {
		// Another viewer's session is not found: its id tells nothing.
		writeError(w, errorf(http.StatusNotFound, "no session %s of camera %s", strconv.Quote(clip(id)), strconv.Quote(clip(camera))))
		return
	}
	reason := "ended by the viewer"
	if p.Name != v.rec.p.Name {
		reason = "ended by " + p.Name
	}
	v.close(reason)
	w.WriteHeader(http.StatusNoContent)
}

// mayEnd reports whether p may end the session: its own viewer (the same
// account, token or link), or someone who monitors viewing in its scope.
func (s *SFU) mayEnd(p *auth.Principal, r *record) bool {
	if p.Name == r.p.Name && p.Via == r.p.Via {
		return true
	}
	if !p.Can(auth.LiveMonitor) {
		return false
	}
	d, ok := s.fleet.Device(r.s.Camera)
	return ok && p.Sees(d.District, d.Site)
}

func (s *SFU) listSessions(w http.ResponseWriter, r *http.Request) {
	q, herr := params(r, "camera")
	if herr != nil {
		writeError(w, herr)
		return
	}
	p := auth.From(r.Context())
	out := SessionList{Sessions: []Session{}}
	for _, rec := range s.sessions() {
		if q.Get("camera") != "" && rec.s.Camera != q.Get("camera") {
			continue
		}
		if d, ok := s.fleet.Device(rec.s.Camera); ok && p.Sees(d.District, d.Site) {
			out.Sessions = append(out.Sessions, rec.snapshot())
		}
	}
	slices.SortFunc(out.Sessions, func(a, b Session) int { return b.Start.Compare(a.Start) })
	writeJSON(w, out)
}

func (s *SFU) listStreams(w http.ResponseWriter, r *http.Request) {
	q, herr := params(r, "camera", "agent")
	if herr != nil {
		writeError(w, herr)
		return
	}
	p := auth.From(r.Context())
	out := StreamList{Streams: []Stream{}}
	for _, u := range s.streams() {
		st := u.describe()
		if (q.Get("camera") == "" || st.Camera == q.Get("camera")) && (q.Get("agent") == "" || st.Agent == q.Get("agent")) {
			if d, ok := s.fleet.Device(st.Camera); ok && p.Sees(d.District, d.Site) {
				out.Streams = append(out.Streams, st)
			}
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
			h.Set("Access-Control-Allow-Headers", "Content-Type, Authorization, If-Match")
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

// writeError answers with e as an error body whose code names the status.
func writeError(w http.ResponseWriter, e *httpError) { auth.Fail(w, e.code, e.msg) }

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
