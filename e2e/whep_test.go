package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

// whepClient is an independent WHEP player (RFC 9725) built on pion: it
// knows nothing of the console, only the standard.
type whepClient struct {
	pc       *webrtc.PeerConnection
	location string
	as       *apiClient // who watches

	mu       sync.Mutex
	nals     []byte   // NAL unit types of the first frames, in arrival order
	frames   int      // RTP marker bits seen: one per frame
	stamps   []uint32 // RTP timestamps of the first frames' last packets
	lastSeq  int      // the last RTP sequence number, -1 before any
	behind   int      // packets whose sequence number was not after the last one's
	firstAt  time.Time
	state    webrtc.PeerConnectionState
	closedCh chan struct{}
}

func newWHEPAPI(t testing.TB, h264 bool) *webrtc.API {
	t.Helper()
	me := &webrtc.MediaEngine{}
	codec := webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
			SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"},
		PayloadType: 102,
	}
	if !h264 {
		codec = webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, PayloadType: 96}
	}
	if err := me.RegisterCodec(codec, webrtc.RTPCodecTypeVideo); err != nil {
		t.Fatal(err)
	}
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	return webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithSettingEngine(se))
}

// offer makes a receive-only video offer with every candidate gathered.
func whepOffer(t testing.TB, api *webrtc.API) (*webrtc.PeerConnection, string) {
	t.Helper()
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		t.Fatal(err)
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	return pc, pc.LocalDescription().SDP
}

// postWHEP sends an offer as the caller; it returns the status, the body
// and Location.
func postWHEP(t testing.TB, as *apiClient, camera, contentType, sdp string) (int, string, string) {
	t.Helper()
	res, err := as.do(http.MethodPost, "api/cameras/"+camera+"/whep", contentType, strings.NewReader(sdp))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(body), res.Header.Get("Location")
}

// playWHEP starts a player of camera as the caller and returns once the
// hub answered.
func playWHEP(t testing.TB, as *apiClient, camera string) *whepClient {
	t.Helper()
	c, err := tryPlayWHEP(t, as, camera)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// tryPlayWHEP is playWHEP for goroutines other than the test's.
func tryPlayWHEP(t testing.TB, as *apiClient, camera string) (*whepClient, error) {
	pc, sdp := whepOffer(t, newWHEPAPI(t, true))
	c := &whepClient{pc: pc, as: as, closedCh: make(chan struct{}), lastSeq: -1}
	var once sync.Once
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		c.mu.Lock()
		c.state = s
		c.mu.Unlock()
		if s == webrtc.PeerConnectionStateClosed || s == webrtc.PeerConnectionStateFailed || s == webrtc.PeerConnectionStateDisconnected {
			once.Do(func() { close(c.closedCh) })
		}
	})
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		for {
			p, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			c.mu.Lock()
			if c.firstAt.IsZero() {
				c.firstAt = time.Now()
			}
			if len(c.nals) < 64 {
				c.nals = append(c.nals, nalTypes(p.Payload)...)
			}
			if p.Marker {
				c.frames++
				if len(c.stamps) < 256 {
					c.stamps = append(c.stamps, p.Timestamp)
				}
			}
			if c.lastSeq >= 0 && int16(p.SequenceNumber-uint16(c.lastSeq)) <= 0 {
				c.behind++
			}
			c.lastSeq = int(p.SequenceNumber)
			c.mu.Unlock()
		}
	})
	t.Cleanup(func() { c.pc.Close() })
	res, err := as.do(http.MethodPost, "api/cameras/"+camera+"/whep", "application/sdp", strings.NewReader(sdp))
	if err != nil {
		return nil, err
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	c.location = res.Header.Get("Location")
	if res.StatusCode != http.StatusCreated || c.location == "" {
		return nil, fmt.Errorf("WHEP POST %s: %s %s (Location %q)", camera, res.Status, body, c.location)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(body)}); err != nil {
		return nil, err
	}
	return c, nil
}

// stop ends the session the WHEP way: DELETE the Location.
func (c *whepClient) stop(t testing.TB) {
	t.Helper()
	res, err := c.as.do(http.MethodDelete, strings.TrimPrefix(c.location, "/"), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNoContent && res.StatusCode != http.StatusOK {
		t.Errorf("DELETE %s: %s", c.location, res.Status)
	}
	c.pc.Close()
}

func (c *whepClient) frameCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.frames
}

// order returns the RTP timestamps of the first frames, and how many
// packets came with a sequence number not after the one before.
func (c *whepClient) order() ([]uint32, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.stamps), c.behind
}

func (c *whepClient) firstPacketAt() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.firstAt
}

// firstFrameNALs returns the NAL types up to the end of the first frame.
func (c *whepClient) firstNALs() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.nals)
}

// nalTypes lists the H.264 NAL unit types an RTP payload carries (single
// NAL, STAP-A, or the start of an FU-A).
func nalTypes(p []byte) []byte {
	if len(p) == 0 {
		return nil
	}
	switch t := p[0] & 0x1f; t {
	case 24: // STAP-A: 2-byte sizes
		var out []byte
		for i := 1; i+2 < len(p); {
			n := int(p[i])<<8 | int(p[i+1])
			if i+2+n > len(p) || n == 0 {
				break
			}
			out = append(out, p[i+2]&0x1f)
			i += 2 + n
		}
		return out
	case 28: // FU-A: only the start fragment names a new NAL
		if len(p) > 1 && p[1]&0x80 != 0 {
			return []byte{p[1] & 0x1f}
		}
		return nil
	default:
		return []byte{t}
	}
}

// awaitFrames waits until the player has decoded-worthy frames.
func (c *whepClient) awaitFrames(t testing.TB, n int, within time.Duration) {
	t.Helper()
	eventually(t, within, func() error {
		if got := c.frameCount(); got < n {
			return fmt.Errorf("%d frames, want %d", got, n)
		}
		return nil
	})
}
