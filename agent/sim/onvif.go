package sim

import (
	"encoding/base64"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/citywatch/citywatch/agent/onvif"
)

// ONVIF is a simulated camera's ONVIF device, media and event services
// (served by ServeHTTP at any path): GetSystemDateAndTime, which needs no
// credentials, and GetDeviceInformation, GetCapabilities (the media and
// event services are the same URL), GetProfiles, GetSnapshotUri,
// CreatePullPointSubscription and PullMessages (events from Emit), which
// need a
// WS-Security UsernameToken whose digest matches Password and whose
// creation time is within ClockTolerance of the camera's clock, as real
// cameras check it.
type ONVIF struct {
	Info               onvif.Info
	Username, Password string
	// Now is the agent's clock (time.Now when nil); the camera's runs
	// Skew ahead of it.
	Now  func() time.Time
	Skew time.Duration
	// Snapshot is the URI GetSnapshotUri answers; empty answers a fault.
	Snapshot string
	// Profiles are the camera's media profiles (GetProfiles) and their
	// stream URIs (GetStreamUri); none is one H.264 profile without a
	// stream.
	Profiles []onvif.Stream

	mu     sync.Mutex
	calls  map[string]int
	events []string      // NotificationMessages waiting for a pull
	posted chan struct{} // closed and replaced when an event is emitted
}

// Emit queues an event for the camera's pull-point subscribers, as the
// camera's analytics would: topic (e.g.
// tns1:RuleEngine/TamperDetector/Tamper) with one data item (IsTamper)
// true or false.
func (o *ONVIF) Emit(topic, item string, active bool) {
	var b strings.Builder
	b.WriteString(`<wsnt:NotificationMessage><wsnt:Topic Dialect="http://www.onvif.org/ver10/tev/topicExpression/ConcreteSet">`)
	xml.EscapeText(&b, []byte(topic))
	fmt.Fprintf(&b, `</wsnt:Topic><wsnt:Message><tt:Message UtcTime="%s" PropertyOperation="Changed"><tt:Source><tt:SimpleItem Name="VideoSourceConfigurationToken" Value="VideoSource_1"/></tt:Source><tt:Data><tt:SimpleItem Name=%q Value="%t"/></tt:Data></tt:Message></wsnt:Message></wsnt:NotificationMessage>`,
		o.clock().Format(time.RFC3339), item, active)
	o.mu.Lock()
	o.events = append(o.events, b.String())
	o.wakeLocked()
	o.mu.Unlock()
}

// wakeLocked wakes the pulls waiting for events; o.mu is held.
func (o *ONVIF) wakeLocked() {
	if o.posted != nil {
		close(o.posted)
	}
	o.posted = make(chan struct{})
}

// pull takes the events waiting, waiting up to wait for one.
func (o *ONVIF) pull(r *http.Request, wait time.Duration) []string {
	o.mu.Lock()
	if len(o.events) == 0 {
		if o.posted == nil {
			o.posted = make(chan struct{})
		}
		posted := o.posted
		o.mu.Unlock()
		select {
		case <-posted:
		case <-time.After(wait):
		case <-r.Context().Done():
		}
		o.mu.Lock()
	}
	out := o.events
	o.events = nil
	o.mu.Unlock()
	return out
}

// ClockTolerance is how far a digest's creation time may be from the
// simulated camera's clock.
const ClockTolerance = 5 * time.Second

// Calls says how many times the device service was asked op (e.g.
// "GetDeviceInformation"), refused or not.
func (o *ONVIF) Calls(op string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.calls[op]
}

// onvifRequest is what the simulator reads of a request.
type onvifRequest struct {
	Token *struct {
		Username string `xml:"Username"`
		Password string `xml:"Password"`
		Nonce    string `xml:"Nonce"`
		Created  string `xml:"Created"`
	} `xml:"Header>Security>UsernameToken"`
	Body struct {
		Op []struct {
			XMLName xml.Name
		} `xml:",any"`
	} `xml:"Body"`
}

// ServeHTTP answers one SOAP call.
func (o *ONVIF) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var req onvifRequest
	data, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err == nil {
		err = xml.Unmarshal(data, &req)
	}
	if err != nil || r.Method != http.MethodPost || len(req.Body.Op) != 1 {
		soapFault(w, http.StatusBadRequest, "env:Sender", "ter:WellFormed", "not a SOAP request")
		return
	}
	op := req.Body.Op[0].XMLName.Local
	o.mu.Lock()
	if o.calls == nil {
		o.calls = map[string]int{}
	}
	o.calls[op]++
	o.mu.Unlock()
	camera := o.clock()
	// Only the clock is answered without credentials.
	if op != "GetSystemDateAndTime" && !o.authorized(req, camera) {
		soapFault(w, http.StatusBadRequest, "env:Sender", "ter:NotAuthorized", "Sender not Authorized")
		return
	}
	switch op {
	case "GetSystemDateAndTime":
		soapAnswer(w, fmt.Sprintf(`<tds:GetSystemDateAndTimeResponse><tds:SystemDateAndTime><tt:DateTimeType>Manual</tt:DateTimeType><tt:DaylightSavings>false</tt:DaylightSavings><tt:UTCDateTime><tt:Time><tt:Hour>%d</tt:Hour><tt:Minute>%d</tt:Minute><tt:Second>%d</tt:Second></tt:Time><tt:Date><tt:Year>%d</tt:Year><tt:Month>%d</tt:Month><tt:Day>%d</tt:Day></tt:Date></tt:UTCDateTime></tds:SystemDateAndTime></tds:GetSystemDateAndTimeResponse>`,
			camera.Hour(), camera.Minute(), camera.Second(), camera.Year(), camera.Month(), camera.Day()))
	case "GetCapabilities":
		var b strings.Builder
		xml.EscapeText(&b, []byte("http://"+r.Host+r.URL.Path))
		soapAnswer(w, `<tds:GetCapabilitiesResponse><tds:Capabilities><tt:Events><tt:XAddr>`+b.String()+`</tt:XAddr></tt:Events><tt:Media><tt:XAddr>`+b.String()+`</tt:XAddr></tt:Media></tds:Capabilities></tds:GetCapabilitiesResponse>`)
	case "CreatePullPointSubscription":
		var b strings.Builder
		xml.EscapeText(&b, []byte("http://"+r.Host+r.URL.Path+"?subscription=1"))
		soapAnswer(w, `<tev:CreatePullPointSubscriptionResponse xmlns:tev="http://www.onvif.org/ver10/events/wsdl" xmlns:wsa5="http://www.w3.org/2005/08/addressing"><tev:SubscriptionReference><wsa5:Address>`+b.String()+`</wsa5:Address></tev:SubscriptionReference></tev:CreatePullPointSubscriptionResponse>`)
	case "PullMessages":
		soapAnswer(w, `<tev:PullMessagesResponse xmlns:tev="http://www.onvif.org/ver10/events/wsdl" xmlns:wsnt="http://docs.oasis-open.org/wsn/b-2">`+strings.Join(o.pull(r, 2*time.Second), "")+`</tev:PullMessagesResponse>`)
	case "GetProfiles":
		profiles := o.Profiles
		if len(profiles) == 0 {
			profiles = []onvif.Stream{{Token: "Profile_1", Encoding: "H264", Width: 1920, Height: 1080}}
		}
		var b strings.Builder
		b.WriteString(`<trt:GetProfilesResponse xmlns:trt="http://www.onvif.org/ver10/media/wsdl">`)
		for _, p := range profiles {
			var tok strings.Builder
			xml.EscapeText(&tok, []byte(p.Token))
			fmt.Fprintf(&b, `<trt:Profiles token="%s" fixed="true"><tt:Name>%s</tt:Name><tt:VideoEncoderConfiguration><tt:Encoding>%s</tt:Encoding><tt:Resolution><tt:Width>%d</tt:Width><tt:Height>%d</tt:Height></tt:Resolution></tt:VideoEncoderConfiguration></trt:Profiles>`,
				tok.String(), tok.String(), p.Encoding, p.Width, p.Height)
		}
		b.WriteString(`</trt:GetProfilesResponse>`)
		soapAnswer(w, b.String())
	case "GetStreamUri":
		var q struct {
			Token string `xml:"Body>GetStreamUri>ProfileToken"`
		}
		_ = xml.Unmarshal(data, &q) // it decoded once already
		i := slices.IndexFunc(o.Profiles, func(p onvif.Stream) bool { return p.Token == q.Token })
		if i < 0 {
			soapFault(w, http.StatusBadRequest, "env:Sender", "ter:NoProfile", "no such profile")
			return
		}
		var b strings.Builder
		xml.EscapeText(&b, []byte(o.Profiles[i].URI))
		soapAnswer(w, `<trt:GetStreamUriResponse xmlns:trt="http://www.onvif.org/ver10/media/wsdl"><trt:MediaUri><tt:Uri>`+b.String()+`</tt:Uri></trt:MediaUri></trt:GetStreamUriResponse>`)
	case "GetSnapshotUri":
		if o.Snapshot == "" {
			soapFault(w, http.StatusBadRequest, "env:Receiver", "ter:ActionNotSupported", "no snapshot")
			return
		}
		var b strings.Builder
		xml.EscapeText(&b, []byte(o.Snapshot))
		soapAnswer(w, `<trt:GetSnapshotUriResponse xmlns:trt="http://www.onvif.org/ver10/media/wsdl"><trt:MediaUri><tt:Uri>`+b.String()+`</tt:Uri></trt:MediaUri></trt:GetSnapshotUriResponse>`)
	case "GetDeviceInformation":
		var b strings.Builder
		b.WriteString(`<tds:GetDeviceInformationResponse>`)
		for _, f := range [][2]string{{"Manufacturer", o.Info.Manufacturer}, {"Model", o.Info.Model}, {"FirmwareVersion", o.Info.Firmware},
			{"SerialNumber", o.Info.Serial}, {"HardwareId", o.Info.HardwareID}} {
			fmt.Fprintf(&b, "<tds:%s>", f[0])
			xml.EscapeText(&b, []byte(f[1]))
			fmt.Fprintf(&b, "</tds:%s>", f[0])
		}
		b.WriteString(`</tds:GetDeviceInformationResponse>`)
		soapAnswer(w, b.String())
	default:
		soapFault(w, http.StatusBadRequest, "env:Receiver", "ter:ActionNotSupported", op+" is not supported")
	}
}

func (o *ONVIF) clock() time.Time {
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	return now().Add(o.Skew).UTC()
}

// authorized checks a request's UsernameToken against the camera's
// credentials and clock.
func (o *ONVIF) authorized(req onvifRequest, camera time.Time) bool {
	t := req.Token
	if t == nil || t.Username != o.Username {
		return false
	}
	created, err := time.Parse(time.RFC3339Nano, t.Created)
	if err != nil || created.Sub(camera).Abs() > ClockTolerance {
		return false
	}
	nonce, err := base64.StdEncoding.DecodeString(t.Nonce)
	return err == nil && onvif.Digest(nonce, t.Created, o.Password) == t.Password
}

const soapOpen = `<?xml version="1.0" encoding="UTF-8"?><env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope" xmlns:tds="http://www.onvif.org/ver10/device/wsdl" xmlns:tt="http://www.onvif.org/ver10/schema" xmlns:ter="http://www.onvif.org/ver10/error"><env:Body>`

func soapAnswer(w http.ResponseWriter, body string) {
	w.Header().Set("Content-Type", "application/soap+xml; charset=utf-8")
	io.WriteString(w, soapOpen+body+`</env:Body></env:Envelope>`)
}

func soapFault(w http.ResponseWriter, status int, code, subcode, reason string) {
	w.Header().Set("Content-Type", "application/soap+xml; charset=utf-8")
	w.WriteHeader(status)
	var b strings.Builder
	xml.EscapeText(&b, []byte(reason))
	fmt.Fprintf(w, `%s<env:Fault><env:Code><env:Value>%s</env:Value><env:Subcode><env:Value>%s</env:Value></env:Subcode></env:Code><env:Reason><env:Text xml:lang="en">%s</env:Text></env:Reason></env:Fault></env:Body></env:Envelope>`,
		soapOpen, code, subcode, b.String())
}

// ServeDiscovery answers WS-Discovery probes arriving on conn, as a camera
// on the site's LAN answers the multicast group, until conn is closed:
// each answer names the camera (endpoint, a urn:uuid), its device service
// (xaddr) and its model and name in onvif:// scopes.
func (o *ONVIF) ServeDiscovery(conn net.PacketConn, endpoint, xaddr, name string) {
	buf := make([]byte, 64<<10)
	for {
		n, from, err := conn.ReadFrom(buf)
		if err != nil {
			return
		}
		var probe struct {
			MessageID string `xml:"Header>MessageID"`
			Types     string `xml:"Body>Probe>Types"`
		}
		if xml.Unmarshal(buf[:n], &probe) != nil || probe.MessageID == "" || !strings.Contains(probe.Types, "NetworkVideoTransmitter") {
			continue
		}
		var b strings.Builder
		b.WriteString(`<?xml version="1.0" encoding="UTF-8"?><s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" xmlns:d="http://schemas.xmlsoap.org/ws/2005/04/discovery"><s:Header><a:Action>http://schemas.xmlsoap.org/ws/2005/04/discovery/ProbeMatches</a:Action><a:RelatesTo>`)
		xml.EscapeText(&b, []byte(probe.MessageID))
		b.WriteString(`</a:RelatesTo></s:Header><s:Body><d:ProbeMatches><d:ProbeMatch><a:EndpointReference><a:Address>`)
		xml.EscapeText(&b, []byte(endpoint))
		b.WriteString(`</a:Address></a:EndpointReference><d:Types>dn:NetworkVideoTransmitter</d:Types><d:Scopes>`)
		xml.EscapeText(&b, []byte("onvif://www.onvif.org/type/video_encoder onvif://www.onvif.org/name/"+url.PathEscape(name)+
			" onvif://www.onvif.org/hardware/"+url.PathEscape(o.Info.Model)))
		b.WriteString(`</d:Scopes><d:XAddrs>`)
		xml.EscapeText(&b, []byte(xaddr))
		b.WriteString(`</d:XAddrs><d:MetadataVersion>1</d:MetadataVersion></d:ProbeMatch></d:ProbeMatches></s:Body></s:Envelope>`)
		_, _ = conn.WriteTo([]byte(b.String()), from)
	}
}
