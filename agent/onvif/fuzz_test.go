package onvif

import (
	"testing"
)

// FuzzDecode feeds the answer decoder anything: it never panics, and what
// it decodes comes from the answer.
func FuzzDecode(f *testing.F) {
	f.Add(200, []byte(`<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body><tds:GetDeviceInformationResponse xmlns:tds="x"><tds:Model>M</tds:Model></tds:GetDeviceInformationResponse></s:Body></s:Envelope>`))
	f.Add(400, []byte(`<s:Envelope xmlns:s="s"><s:Body><s:Fault><s:Code><s:Value>s:Sender</s:Value><s:Subcode><s:Value>ter:NotAuthorized</s:Value></s:Subcode></s:Code><s:Reason><s:Text>no</s:Text></s:Reason></s:Fault></s:Body></s:Envelope>`))
	f.Add(200, []byte(`<Envelope><Body><GetSystemDateAndTimeResponse><SystemDateAndTime><UTCDateTime><Time><Hour>25</Hour></Time></UTCDateTime></SystemDateAndTime></GetSystemDateAndTimeResponse></Body></Envelope>`))
	f.Add(401, []byte(``))
	f.Fuzz(func(t *testing.T, status int, data []byte) {
		var r struct {
			Info Info `xml:"Body>GetDeviceInformationResponse"`
		}
		err := decode(status, data, &r)
		if err != nil && r.Info != (Info{}) && status/100 != 2 {
			t.Fatalf("a refused answer decoded %+v", r.Info)
		}
		if n := len(r.Info.Manufacturer) + len(r.Info.Model) + len(r.Info.Firmware) + len(r.Info.Serial) + len(r.Info.HardwareID); n > len(data) {
			t.Fatalf("decoded %d bytes of text from a %d-byte answer", n, len(data))
		}
	})
}

// FuzzDecodeMatches feeds the discovery answer decoder anything: it never
// panics, and what it returns names a camera with a device service.
func FuzzDecodeMatches(f *testing.F) {
	const id = "urn:uuid:1"
	f.Add([]byte(`<s:Envelope xmlns:s="s" xmlns:a="a" xmlns:d="d"><s:Header><a:RelatesTo>urn:uuid:1</a:RelatesTo></s:Header><s:Body><d:ProbeMatches><d:ProbeMatch><a:EndpointReference><a:Address>urn:uuid:cam</a:Address></a:EndpointReference><d:Scopes>onvif://www.onvif.org/name/Gate%20east</d:Scopes><d:XAddrs>http://192.0.2.1/onvif/device_service</d:XAddrs></d:ProbeMatch></d:ProbeMatches></s:Body></s:Envelope>`))
	f.Add([]byte(`<Envelope><Header><RelatesTo>urn:uuid:1</RelatesTo></Header><Body><ProbeMatches><ProbeMatch><XAddrs>ftp://x http://u:p@h/</XAddrs></ProbeMatch></ProbeMatches></Body></Envelope>`))
	f.Fuzz(func(t *testing.T, data []byte) {
		found, err := decodeMatches(data, id)
		if err != nil {
			if found != nil {
				t.Fatalf("an error with %+v", found)
			}
			return
		}
		for _, c := range found {
			if c.Endpoint == "" || len(c.XAddrs) == 0 {
				t.Fatalf("found %+v: no endpoint or device service", c)
			}
		}
	})
}
