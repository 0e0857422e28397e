package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v4/pkg/format/rtph265"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/hub/live"
	"github.com/citywatch/citywatch/wire"
	"github.com/citywatch/citywatch/wire/rtph264"
)

// h265Player is a WHEP player whose offer has H.265 before H.264, as a
// browser that decodes H.265 makes, built on pion. It reads datagrams of
// at most 1,200 bytes, as WebRTC receivers may, and keeps the access
// units it receives.
type h265Player struct {
	pc       *webrtc.PeerConnection
	location string

	mu      sync.Mutex
	mime    string
	aus     [][][]byte // access units, NAL units each
	packets int
	largest int   // bytes of the largest RTP packet
	err     error // depacketizing
}

func playH265(t *testing.T, as *apiClient, camera string) *h265Player {
	t.Helper()
	me := &webrtc.MediaEngine{}
	for _, c := range []webrtc.RTPCodecParameters{
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH265, ClockRate: 90000,
			SDPFmtpLine: "level-id=93;profile-id=1;tier-flag=0;tx-mode=SRST"}, PayloadType: 116},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
			SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"}, PayloadType: 102},
	} {
		if err := me.RegisterCodec(c, webrtc.RTPCodecTypeVideo); err != nil {
			t.Fatal(err)
		}
	}
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetReceiveMTU(rtph264.MaxPacketSize)
	pc, offer := whepOffer(t, webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithSettingEngine(se)))
	t.Cleanup(func() { pc.Close() })
	p := &h265Player{pc: pc}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		p.mu.Lock()
		p.mime = tr.Codec().MimeType
		p.mu.Unlock()
		var dec rtph265.Decoder
		if err := dec.Init(); err != nil {
			p.fail(err)
			return
		}
		for {
			pkt, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			p.take(&dec, pkt)
		}
	})
	code, body, loc := postWHEP(t, as, camera, "application/sdp", offer)
	if code != http.StatusCreated {
		t.Fatalf("WHEP POST %s with H.265: %d %s", camera, code, body)
	}
	if !strings.Contains(body, "H265/90000") {
		t.Fatalf("the answer has no H.265:\n%s", body)
	}
	p.location = loc
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: body}); err != nil {
		t.Fatal(err)
	}
	return p
}

// take depacketizes one packet (RFC 7798); a first packet that does not
// start a NAL unit, before the first access unit, is not an error.
func (p *h265Player) take(dec *rtph265.Decoder, pkt *rtp.Packet) {
	au, err := dec.Decode(pkt)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.packets++
	p.largest = max(p.largest, pkt.MarshalSize())
	switch {
	case errors.Is(err, rtph265.ErrMorePacketsNeeded):
	case err != nil:
		if len(p.aus) > 0 && p.err == nil {
			p.err = fmt.Errorf("packet %d: %w", pkt.SequenceNumber, err)
		}
	default:
		p.aus = append(p.aus, slices.Clone(au))
	}
}

func (p *h265Player) fail(err error) {
	p.mu.Lock()
	p.err = err
	p.mu.Unlock()
}

func (p *h265Player) units() ([][][]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.aus), p.err
}

// decode has FFmpeg decode access units as an H.265 elementary stream and
// returns how many pictures came out; an error if FFmpeg finds any.
func decode(t *testing.T, aus [][][]byte) (int, error) {
	t.Helper()
	bin, err := exec.LookPath("ffmpeg")
	if err != nil {
		t.Fatalf("ffmpeg is needed to decode the stream (bash scripts/deps.sh installs it): %v", err)
	}
	var es bytes.Buffer
	for _, au := range aus {
		for _, nal := range au {
			es.Write([]byte{0, 0, 0, 1})
			es.Write(nal)
		}
	}
	file := filepath.Join(t.TempDir(), "received.h265")
	if err := os.WriteFile(file, es.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(bin, "-hide_banner", "-nostdin", "-v", "error", "-f", "hevc", "-i", file, "-f", "framecrc", "-")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || stderr.Len() > 0 {
		return 0, fmt.Errorf("ffmpeg: %v: %s", err, stderr.String())
	}
	frames := 0
	for line := range strings.Lines(string(out)) {
		if !strings.HasPrefix(line, "#") {
			frames++
		}
	}
	return frames, nil
}

// TestH265CameraOverWebRTC runs a real H.265 camera (FFmpeg, libx265) with
// an H.264 sub-stream behind a real agent process and hub process. A WHEP
// player whose offer has H.265 gets the main stream as the camera sends
// it: H.265 over WebRTC, starting at a keyframe with its parameter sets
// (VPS, SPS, PPS, then an IRAP picture), in packets of at most 1,200
// bytes, and FFmpeg decodes every access unit it received. At the same
// time a player with H.264 only gets the H.264 sub-stream, from a second
// upstream. The camera stays online throughout and after.
func TestH265CameraOverWebRTC(t *testing.T) {
	broker, hub, main, sub := h265Cameras(t)
	exited := runAgentProcess(t, broker.URL(), fmt.Sprintf("  - {id: cam-h265, rtsp: %q, rtsp_sub: %q, fov: 90}\n", main.URL(), sub.URL()))
	online := func() error {
		select {
		case err := <-exited:
			t.Fatalf("the agent exited: %v", err)
		default:
		}
		var d struct{ Device fleet.Device }
		if err := hub.get("api/devices/cam-h265", &d); err != nil {
			return err
		}
		if d.Device.Status != wire.StatusOnline {
			return fmt.Errorf("cam-h265 is %s (%s %s)", d.Device.Status, d.Device.Reason, d.Device.Detail)
		}
		return nil
	}
	eventually(t, time.Minute, online)

	p := playH265(t, hub.api, "cam-h265")
	h264 := playWHEP(t, hub.api, "cam-h265")
	eventually(t, 30*time.Second, func() error {
		aus, err := p.units()
		if err == nil && len(aus) < 30 {
			err = fmt.Errorf("%d H.265 access units, want 30", len(aus))
		}
		return err
	})
	h264.awaitFrames(t, 20, 30*time.Second)

	p.mu.Lock()
	mime, largest := p.mime, p.largest
	p.mu.Unlock()
	if mime != webrtc.MimeTypeH265 {
		t.Errorf("the H.265 player receives %s", mime)
	}
	if largest+rtph264.SRTPOverhead+rtph264.ExtensionBudget > rtph264.MaxPacketSize {
		t.Errorf("an RTP packet of %d bytes, over the budget", largest)
	}
	aus, _ := p.units()
	var first []byte
	for _, nal := range aus[0] {
		first = append(first, rtph264.H265.Type(nal))
	}
	irap := slices.ContainsFunc(first, func(typ byte) bool { return rtph264.H265.Keyframe(typ) })
	if !slices.Contains(first, 32) || !slices.Contains(first, 33) || !slices.Contains(first, 34) || !irap {
		t.Errorf("the first access unit's NAL types %v, want VPS (32), SPS (33), PPS (34) and an IRAP picture", first)
	}
	if frames, err := decode(t, aus); err != nil || frames != len(aus) {
		t.Errorf("FFmpeg decoded %d pictures of %d access units: %v", frames, len(aus), err)
	}
	if n := h264.firstNALs(); len(n) == 0 || n[0] != 7 && n[0] != 5 && n[0] != 24 {
		t.Errorf("the H.264 player's first NAL units %v, want H.264 starting at a keyframe", n)
	}
	var streams live.StreamList
	if err := hub.get("api/live/streams?camera=cam-h265", &streams); err != nil || len(streams.Streams) != 2 {
		t.Errorf("streams of cam-h265 %+v, %v; want two, one per codec", streams.Streams, err)
	}
	if err := online(); err != nil {
		t.Errorf("while viewing: %v", err)
	}

	h264.stop(t)
	res, err := hub.api.do(http.MethodDelete, strings.TrimPrefix(p.location, "/"), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNoContent {
		t.Errorf("DELETE %s: %s", p.location, res.Status)
	}
	// A probe round later, too: nothing the streams did lingers.
	time.Sleep(3 * time.Second)
	if err := online(); err != nil {
		t.Errorf("after viewing: %v", err)
	}
}
