// Package audience is the live video benchmark's audience: WHEP viewers
// (RFC 9725) run in a process of their own (cmd/viewers), so that what
// they cost is not counted as the relay's. Each is a receive-only pion
// peer connection as a browser makes it (H.264 in four profiles, NACK,
// receiver reports, transport-wide congestion feedback), on loopback
// only, reading through a small receive MTU; it puts its packets back in
// order, depacketizes every access unit and counts the frames a decoder
// could decode, those it could not (after a loss, until the next
// keyframe) and the gaps (Counts). The endpoint's session URLs (Location)
// are deleted at the end.
package audience

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// Report is what the viewers received so far.
type Report struct {
	Opened  int          `json:"opened"` // sessions the endpoint answered
	Errors  []string     `json:"errors,omitempty"`
	Viewers []ViewerStat `json:"viewers"`
}

// ViewerStat is one viewer's counts.
type ViewerStat struct {
	Counts
	State string `json:"state"` // of the peer connection
	// FirstFrameMillis is from sending the offer to the first decodable
	// frame; 0 before it.
	FirstFrameMillis float64 `json:"first_frame_ms"`
}

// Options say whom to watch and how.
type Options struct {
	URL      string // the WHEP endpoint
	Token    string // bearer token for it; "" for none
	Viewers  int
	MTU      uint // receive MTU: the largest datagram read
	Parallel int  // offers sent at once
}

// Run opens the sessions, answers every line read from in with a Report
// on out, and when in ends or ctx does, ends the sessions and writes the
// last Report.
func Run(ctx context.Context, o Options, in io.Reader, out io.Writer) error {
	if o.URL == "" || o.Viewers < 1 || o.MTU < 1 || o.Parallel < 1 {
		return errors.New("want an endpoint URL, and viewers, MTU and parallel offers above 0")
	}
	api, err := newAPI(o.MTU)
	if err != nil {
		return err
	}
	a := &crowd{endpoint: o.URL, token: o.Token, hc: &http.Client{Timeout: 30 * time.Second}}
	a.open(api, o.Viewers, o.Parallel)
	enc := json.NewEncoder(out)
	if err := enc.Encode(a.report()); err != nil {
		return err
	}
	asks := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(in)
		for sc.Scan() {
			select {
			case asks <- struct{}{}:
			case <-ctx.Done():
				return
			}
		}
		close(asks)
	}()
	for {
		select {
		case _, ok := <-asks:
			if ok {
				if err := enc.Encode(a.report()); err != nil {
					return err
				}
				continue
			}
		case <-ctx.Done():
		}
		// in ended, or ctx did.
		a.close()
		return enc.Encode(a.report())
	}
}

// newAPI makes what a browser offers for receiving video: H.264 in the
// usual profiles, packetization mode 1, with pion's NACK, RTCP reports and
// TWCC feedback.
func newAPI(mtu uint) (*webrtc.API, error) {
	me := &webrtc.MediaEngine{}
	for i, profile := range []string{"42e01f", "42001f", "4d001f", "64001f"} {
		err := me.RegisterCodec(webrtc.RTPCodecParameters{
			RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
				SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=" + profile},
			PayloadType: webrtc.PayloadType(102 + 2*i),
		}, webrtc.RTPCodecTypeVideo)
		if err != nil {
			return nil, err
		}
	}
	ir := &interceptor.Registry{}
	if err := webrtc.ConfigureNack(me, ir); err != nil {
		return nil, err
	}
	if err := webrtc.ConfigureRTCPReports(ir); err != nil {
		return nil, err
	}
	if err := webrtc.ConfigureTWCCSender(me, ir); err != nil {
		return nil, err
	}
	se := webrtc.SettingEngine{}
	se.SetReceiveMTU(mtu)
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	return webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)), nil
}

// crowd is every viewer.
type crowd struct {
	endpoint, token string
	hc              *http.Client

	mu      sync.Mutex
	viewers []*viewer
	errs    []string
}

// open starts n viewers, parallel offers at a time, and returns when each
// has its answer or has failed.
func (a *crowd) open(api *webrtc.API, n, parallel int) {
	slots := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for range n {
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			v, err := a.play(api)
			a.mu.Lock()
			defer a.mu.Unlock()
			if err != nil {
				a.errs = append(a.errs, err.Error())
				return
			}
			a.viewers = append(a.viewers, v)
		})
	}
	wg.Wait()
}

func (a *crowd) report() Report {
	a.mu.Lock()
	defer a.mu.Unlock()
	r := Report{Opened: len(a.viewers), Errors: a.errs, Viewers: make([]ViewerStat, 0, len(a.viewers))}
	for _, v := range a.viewers {
		r.Viewers = append(r.Viewers, v.stat())
	}
	return r
}

// close ends every session, side by side.
func (a *crowd) close() {
	a.mu.Lock()
	viewers := a.viewers
	a.mu.Unlock()
	var wg sync.WaitGroup
	for _, v := range viewers {
		wg.Go(func() {
			if err := a.end(v); err != nil {
				a.mu.Lock()
				a.errs = append(a.errs, err.Error())
				a.mu.Unlock()
			}
		})
	}
	wg.Wait()
}

// viewer is one WHEP session.
type viewer struct {
	pc       *webrtc.PeerConnection
	location string    // the session URL, "" if the endpoint gave none
	start    time.Time // when the offer was sent; set before any packet

	mu        sync.Mutex
	f         *frames
	firstAt   time.Time
	state     webrtc.PeerConnectionState
	readError error
}

func (v *viewer) stat() ViewerStat {
	v.mu.Lock()
	defer v.mu.Unlock()
	s := ViewerStat{Counts: v.f.Counts, State: v.state.String()}
	if !v.firstAt.IsZero() {
		s.FirstFrameMillis = float64(v.firstAt.Sub(v.start).Microseconds()) / 1000
	}
	if v.readError != nil && v.state == webrtc.PeerConnectionStateConnected {
		s.State = "read error: " + v.readError.Error()
	}
	return s
}

// play offers to receive video, with every candidate, and applies the
// answer.
func (a *crowd) play(api *webrtc.API) (*viewer, error) {
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, err
	}
	v := &viewer{pc: pc, f: newFrames()}
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		v.mu.Lock()
		v.state = s
		v.mu.Unlock()
	})
	pc.OnTrack(func(t *webrtc.TrackRemote, _ *webrtc.RTPReceiver) { v.read(t) })
	fail := func(err error) (*viewer, error) {
		pc.Close()
		return nil, err
	}
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		return fail(err)
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return fail(err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		return fail(err)
	}
	<-gathered
	req, err := a.request(http.MethodPost, a.endpoint, strings.NewReader(pc.LocalDescription().SDP))
	if err != nil {
		return fail(err)
	}
	req.Header.Set("Content-Type", "application/sdp")
	v.start = time.Now()
	res, err := a.hc.Do(req)
	if err != nil {
		return fail(err)
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		return fail(err)
	}
	if res.StatusCode != http.StatusCreated {
		return fail(fmt.Errorf("POST %s: %s %s", a.endpoint, res.Status, strings.TrimSpace(string(body))))
	}
	if loc := res.Header.Get("Location"); loc != "" {
		u, err := res.Request.URL.Parse(loc)
		if err != nil {
			return fail(fmt.Errorf("session URL %q: %w", loc, err))
		}
		v.location = u.String()
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(body)}); err != nil {
		return fail(fmt.Errorf("the answer: %w", err))
	}
	return v, nil
}

func (a *crowd) request(method, u string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		return nil, err
	}
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	return req, nil
}

// end ends v's session: DELETE of its URL, then its peer connection.
func (a *crowd) end(v *viewer) error {
	defer v.pc.Close()
	if v.location == "" {
		return nil
	}
	req, err := a.request(http.MethodDelete, v.location, nil)
	if err != nil {
		return err
	}
	res, err := a.hc.Do(req)
	if err != nil {
		return err
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK && res.StatusCode != http.StatusNoContent {
		return fmt.Errorf("DELETE %s: %s", v.location, res.Status)
	}
	return nil
}

// read receives the track until it ends.
func (v *viewer) read(t *webrtc.TrackRemote) {
	buf := make([]byte, 1500)
	for {
		n, _, err := t.Read(buf)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				v.mu.Lock()
				v.readError = err
				v.mu.Unlock()
			}
			return
		}
		p := &rtp.Packet{}
		if err := p.Unmarshal(append([]byte(nil), buf[:n]...)); err != nil {
			continue
		}
		v.mu.Lock()
		before := v.f.Frames
		v.f.push(p)
		if before == 0 && v.f.Frames > 0 {
			v.firstAt = time.Now()
		}
		v.mu.Unlock()
	}
}
