package onvif

import (
	"context"
	"errors"
	"strings"
)

// Stream is one of a camera's media profiles and where it streams.
type Stream struct {
	Token         string
	Encoding      string // H264, H265, JPEG…, as the camera names it
	Width, Height int
	URI           string // rtsp://… without credentials
}

// maxProfiles bounds the profiles asked for their stream URIs.
const maxProfiles = 8

// Streams lists the camera's media profiles (GetProfiles on the media
// service) with their encoding, resolution and RTSP URI (GetStreamUri),
// in the camera's order: the main stream first, sub-streams after.
func (c *Client) Streams(ctx context.Context) ([]Stream, error) {
	media, err := c.mediaService(ctx)
	if err != nil {
		return nil, err
	}
	var r struct {
		Profiles []struct {
			Token   string `xml:"token,attr"`
			Encoder struct {
				Encoding string `xml:"Encoding"`
				Width    int    `xml:"Resolution>Width"`
				Height   int    `xml:"Resolution>Height"`
			} `xml:"VideoEncoderConfiguration"`
		} `xml:"Body>GetProfilesResponse>Profiles"`
	}
	if err := c.callAt(ctx, media, `<trt:GetProfiles xmlns:trt="http://www.onvif.org/ver10/media/wsdl"/>`, true, &r); err != nil {
		return nil, err
	}
	var out []Stream
	for _, p := range r.Profiles[:min(len(r.Profiles), maxProfiles)] {
		if p.Token == "" {
			continue
		}
		var body strings.Builder
		body.WriteString(`<trt:GetStreamUri xmlns:trt="http://www.onvif.org/ver10/media/wsdl" xmlns:tt="http://www.onvif.org/ver10/schema"><trt:StreamSetup><tt:Stream>RTP-Unicast</tt:Stream><tt:Transport><tt:Protocol>RTSP</tt:Protocol></tt:Transport></trt:StreamSetup><trt:ProfileToken>`)
		if err := xmlEscape(&body, p.Token); err != nil {
			return nil, err
		}
		body.WriteString(`</trt:ProfileToken></trt:GetStreamUri>`)
		var s struct {
			URI string `xml:"Body>GetStreamUriResponse>MediaUri>Uri"`
		}
		if err := c.callAt(ctx, media, body.String(), true, &s); err != nil {
			return nil, err
		}
		uri := strings.TrimSpace(s.URI)
		if !strings.HasPrefix(uri, "rtsp://") && !strings.HasPrefix(uri, "rtsps://") {
			continue // not a stream the agent plays
		}
		out = append(out, Stream{Token: p.Token, Encoding: strings.ToUpper(strings.TrimSpace(p.Encoder.Encoding)),
			Width: p.Encoder.Width, Height: p.Encoder.Height, URI: uri})
	}
	if len(out) == 0 {
		return nil, errors.New("onvif: the camera's profiles give no RTSP stream")
	}
	return out, nil
}
