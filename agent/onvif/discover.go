package onvif

import (
	"context"
	"crypto/rand"
	"encoding/xml"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"
)

// DiscoveryAddr is where WS-Discovery probes go: the multicast group of
// the site's LAN.
const DiscoveryAddr = "239.255.255.250:3702"

// MaxFound bounds the cameras one discovery returns.
const MaxFound = 1024

// Found is a camera that answered a discovery probe.
type Found struct {
	// Endpoint is the camera's stable id (urn:uuid:…).
	Endpoint string
	// XAddrs are its device service URLs, http(s) only.
	XAddrs []string
	// Name, Hardware and Location are from its onvif:// scopes, when it
	// gives them.
	Name, Hardware, Location string
}

// Discover sends a WS-Discovery probe for network video transmitters to
// addr (DiscoveryAddr when empty) and gathers the answers until ctx ends,
// which it must (give it a timeout). Answers that do not decode, or name
// no http(s) device service, are skipped and counted in skipped.
func Discover(ctx context.Context, addr string) (found []Found, skipped int, err error) {
	if _, ok := ctx.Deadline(); !ok {
		return nil, 0, errors.New("onvif: Discover needs a deadline")
	}
	if addr == "" {
		addr = DiscoveryAddr
	}
	to, err := net.ResolveUDPAddr("udp4", addr)
	if err != nil {
		return nil, 0, fmt.Errorf("onvif: discovery address: %w", err)
	}
	conn, err := net.ListenUDP("udp4", nil)
	if err != nil {
		return nil, 0, fmt.Errorf("onvif: %w", err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Now()) })
	defer stop()
	id, err := messageID()
	if err != nil {
		return nil, 0, err
	}
	if _, err := conn.WriteToUDP([]byte(probeMessage(id)), to); err != nil {
		return nil, 0, fmt.Errorf("onvif: sending the probe: %w", err)
	}
	buf := make([]byte, 64<<10)
	for len(found) < MaxFound {
		n, _, err := conn.ReadFromUDP(buf)
		if err != nil {
			if ctx.Err() != nil {
				return found, skipped, nil
			}
			return found, skipped, fmt.Errorf("onvif: %w", err)
		}
		matches, err := decodeMatches(buf[:n], id)
		if err != nil {
			skipped++
			continue
		}
		for _, f := range matches {
			if !slices.ContainsFunc(found, func(g Found) bool { return g.Endpoint == f.Endpoint }) && len(found) < MaxFound {
				found = append(found, f)
			}
		}
	}
	return found, skipped, nil
}

// messageID is a random urn:uuid for a probe.
func messageID() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("onvif: message id: %w", err)
	}
	b[6], b[8] = b[6]&0x0f|0x40, b[8]&0x3f|0x80
	return fmt.Sprintf("urn:uuid:%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:]), nil
}

func probeMessage(id string) string {
	return `<?xml version="1.0" encoding="UTF-8"?><s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" xmlns:d="http://schemas.xmlsoap.org/ws/2005/04/discovery" xmlns:dn="http://www.onvif.org/ver10/network/wsdl"><s:Header><a:Action s:mustUnderstand="1">http://schemas.xmlsoap.org/ws/2005/04/discovery/Probe</a:Action><a:MessageID>` +
		id + `</a:MessageID><a:To s:mustUnderstand="1">urn:schemas-xmlsoap-org:ws:2005:04:discovery</a:To></s:Header><s:Body><d:Probe><d:Types>dn:NetworkVideoTransmitter</d:Types></d:Probe></s:Body></s:Envelope>`
}

// decodeMatches reads a ProbeMatches answer to the probe id: the cameras
// it names with at least one http(s) device service.
func decodeMatches(data []byte, id string) ([]Found, error) {
	var env struct {
		RelatesTo string `xml:"Header>RelatesTo"`
		Matches   []struct {
			Address string `xml:"EndpointReference>Address"`
			Scopes  string `xml:"Scopes"`
			XAddrs  string `xml:"XAddrs"`
		} `xml:"Body>ProbeMatches>ProbeMatch"`
	}
	if err := xml.Unmarshal(data, &env); err != nil {
		return nil, fmt.Errorf("onvif: not a discovery answer: %w", err)
	}
	if strings.TrimSpace(env.RelatesTo) != id {
		return nil, errors.New("onvif: an answer to another probe")
	}
	var out []Found
	for _, m := range env.Matches {
		f := Found{Endpoint: strings.TrimSpace(m.Address)}
		for _, x := range strings.Fields(m.XAddrs) {
			if u, err := url.Parse(x); err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && u.User == nil {
				f.XAddrs = append(f.XAddrs, x)
			}
		}
		for _, s := range strings.Fields(m.Scopes) {
			for key, dst := range map[string]*string{"name/": &f.Name, "hardware/": &f.Hardware, "location/": &f.Location} {
				if v, ok := strings.CutPrefix(s, "onvif://www.onvif.org/"+key); ok {
					if u, err := url.PathUnescape(v); err == nil {
						*dst = u
					}
				}
			}
		}
		if f.Endpoint != "" && len(f.XAddrs) > 0 {
			out = append(out, f)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("onvif: the answer names no camera with a device service")
	}
	return out, nil
}
