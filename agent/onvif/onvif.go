// Package onvif is the small part of ONVIF (Profile S/T) an agent needs
// from a camera, written for it: no maintained Go ONVIF module is served
// here. Calls go as SOAP 1.2 over HTTP with a WS-Security UsernameToken
// (password digest), the authentication every ONVIF camera takes.
//
// A Client asks the device service for the camera's identity
// (GetDeviceInformation: manufacturer, model, firmware, serial) and its
// clock (GetSystemDateAndTime, which cameras answer without credentials).
// The clock comes first: a digest is stamped with its creation time, and a
// camera whose clock is off refuses digests stamped by the agent's, so the
// client stamps them in the camera's time.
//
// What a camera answers is outside input: answers are read up to
// MaxResponse bytes, decoded by element names (any namespace prefix), and
// a bad or hostile one is an error that changes nothing.
package onvif

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// MaxResponse bounds what is read of one answer.
const MaxResponse = 1 << 20

// ErrNotAuthorized is a camera refusing the credentials.
var ErrNotAuthorized = errors.New("onvif: not authorized")

// Client calls one camera's device service.
type Client struct {
	url                *url.URL
	username, password string
	http               *http.Client
	now                func() time.Time

	mu     sync.Mutex
	offset time.Duration // the camera's clock minus ours, once learnt
	synced bool
}

// Options are a Client's settings.
type Options struct {
	// URL is the device service, e.g. http://192.0.2.10/onvif/device_service.
	URL                string
	Username, Password string
	// HTTP is the client calls go through; nil is one with a 10 s timeout
	// that follows no redirects.
	HTTP *http.Client
	// Now is the agent's clock; nil is time.Now.
	Now func() time.Time
}

// New checks opts; it calls nothing.
func New(opts Options) (*Client, error) {
	u, err := url.Parse(opts.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		// The parse error would quote the URL, and a URL may hold a password.
		return nil, errors.New("onvif: the device service URL must be http(s)://host/…")
	}
	if u.User != nil {
		// Errors quote the URL; credentials go in Username and Password.
		return nil, errors.New("onvif: the device service URL holds credentials; give them as username and password")
	}
	c := &Client{url: u, username: opts.Username, password: opts.Password, http: opts.HTTP, now: opts.Now}
	if c.http == nil {
		c.http = &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if c.now == nil {
		c.now = time.Now
	}
	return c, nil
}

// Info is what GetDeviceInformation says of a camera.
type Info struct {
	Manufacturer string `xml:"Manufacturer"`
	Model        string `xml:"Model"`
	Firmware     string `xml:"FirmwareVersion"`
	Serial       string `xml:"SerialNumber"`
	HardwareID   string `xml:"HardwareId"`
}

// DeviceInformation asks the camera who it is.
func (c *Client) DeviceInformation(ctx context.Context) (Info, error) {
	var r struct {
		Info Info `xml:"Body>GetDeviceInformationResponse"`
	}
	if err := c.call(ctx, `<tds:GetDeviceInformation xmlns:tds="http://www.onvif.org/ver10/device/wsdl"/>`, true, &r); err != nil {
		return Info{}, err
	}
	if r.Info == (Info{}) {
		return Info{}, errors.New("onvif: GetDeviceInformation: the answer says nothing of the device")
	}
	return r.Info, nil
}

// Clock is a camera's clock against the agent's.
type Clock struct {
	Camera time.Time     // the camera's UTC time when it answered
	Drift  time.Duration // Camera minus the agent's clock at the middle of the call
}

// SystemTime reads the camera's clock (without credentials, as ONVIF
// allows) and from then on stamps digests in the camera's time.
func (c *Client) SystemTime(ctx context.Context) (Clock, error) {
	var r struct {
		UTC struct {
			Time struct {
				Hour   int `xml:"Hour"`
				Minute int `xml:"Minute"`
				Second int `xml:"Second"`
			} `xml:"Time"`
			Date struct {
				Year  int `xml:"Year"`
				Month int `xml:"Month"`
				Day   int `xml:"Day"`
			} `xml:"Date"`
		} `xml:"Body>GetSystemDateAndTimeResponse>SystemDateAndTime>UTCDateTime"`
	}
	before := c.now()
	if err := c.call(ctx, `<tds:GetSystemDateAndTime xmlns:tds="http://www.onvif.org/ver10/device/wsdl"/>`, false, &r); err != nil {
		return Clock{}, err
	}
	after := c.now()
	d, tm := r.UTC.Date, r.UTC.Time
	if d.Year < 1970 || d.Year > 9999 || d.Month < 1 || d.Month > 12 || d.Day < 1 || d.Day > 31 ||
		tm.Hour < 0 || tm.Hour > 23 || tm.Minute < 0 || tm.Minute > 59 || tm.Second < 0 || tm.Second > 60 {
		return Clock{}, errors.New("onvif: GetSystemDateAndTime: no valid UTC date and time in the answer")
	}
	cam := time.Date(d.Year, time.Month(d.Month), d.Day, tm.Hour, tm.Minute, tm.Second, 0, time.UTC)
	mid := before.Add(after.Sub(before) / 2)
	clk := Clock{Camera: cam, Drift: cam.Sub(mid)}
	c.mu.Lock()
	c.offset, c.synced = clk.Drift, true
	c.mu.Unlock()
	return clk, nil
}

// call posts body in a SOAP envelope (with the UsernameToken when auth)
// and decodes the answer into v.
func (c *Client) call(ctx context.Context, body string, auth bool, v any) error {
	return c.callAt(ctx, c.url.String(), body, auth, v)
}

// callAt is call to another of the camera's services (media), at target.
func (c *Client) callAt(ctx context.Context, target, body string, auth bool, v any) error {
	var env bytes.Buffer
	env.WriteString(`<?xml version="1.0" encoding="UTF-8"?><s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope">`)
	if auth && c.username != "" {
		c.mu.Lock()
		offset := c.offset
		c.mu.Unlock()
		if err := writeSecurity(&env, c.username, c.password, c.now().Add(offset)); err != nil {
			return err
		}
	}
	env.WriteString(`<s:Body>`)
	env.WriteString(body)
	env.WriteString(`</s:Body></s:Envelope>`)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, &env)
	if err != nil {
		return fmt.Errorf("onvif: %w", err)
	}
	req.Header.Set("Content-Type", `application/soap+xml; charset=utf-8`)
	res, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("onvif: %w", err) // the URL holds no credentials (New)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(io.LimitReader(res.Body, MaxResponse+1))
	if err != nil {
		return fmt.Errorf("onvif: reading the answer: %w", err)
	}
	if len(data) > MaxResponse {
		return fmt.Errorf("onvif: the answer is over %d bytes", MaxResponse)
	}
	return decode(res.StatusCode, data, v)
}

// decode reads an answer: a SOAP Fault is an error (ErrNotAuthorized for
// refused credentials), anything else is decoded into v.
func decode(status int, data []byte, v any) error {
	var f struct {
		Fault *struct {
			Code struct {
				Value   string `xml:"Value"`
				Subcode struct {
					Value string `xml:"Value"`
				} `xml:"Subcode"`
			} `xml:"Code"`
			Reason struct {
				Text string `xml:"Text"`
			} `xml:"Reason"`
		} `xml:"Body>Fault"`
	}
	if err := xml.Unmarshal(data, &f); err != nil {
		if status == http.StatusUnauthorized {
			return ErrNotAuthorized // HTTP authentication, no SOAP
		}
		return fmt.Errorf("onvif: the answer (HTTP %d) is not SOAP: %w", status, err)
	}
	if f.Fault != nil {
		sub := localName(f.Fault.Code.Subcode.Value)
		// The camera's words, quoted and cut to 200 characters.
		why := fmt.Sprintf("%.200q", strings.TrimSpace(f.Fault.Reason.Text))
		if sub == "NotAuthorized" || status == http.StatusUnauthorized {
			return fmt.Errorf("%w: %s", ErrNotAuthorized, why)
		}
		return fmt.Errorf("onvif: the camera answered a fault: %.64s %.64s: %s", localName(f.Fault.Code.Value), sub, why)
	}
	if status == http.StatusUnauthorized {
		return ErrNotAuthorized
	}
	if status/100 != 2 {
		return fmt.Errorf("onvif: the camera answered HTTP %d", status)
	}
	if err := xml.Unmarshal(data, v); err != nil {
		return fmt.Errorf("onvif: the answer does not decode: %w", err)
	}
	return nil
}

// writeSecurity writes the WS-Security header: a UsernameToken with the
// password digest Base64(SHA-1(nonce + created + password)).
func writeSecurity(w *bytes.Buffer, username, password string, created time.Time) error {
	nonce := make([]byte, 16)
	if _, err := rand.Read(nonce); err != nil {
		return fmt.Errorf("onvif: nonce: %w", err)
	}
	stamp := created.UTC().Format("2006-01-02T15:04:05.000Z")
	w.WriteString(`<s:Header><wsse:Security s:mustUnderstand="1" xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd" xmlns:wsu="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"><wsse:UsernameToken><wsse:Username>`)
	if err := xmlEscape(w, username); err != nil {
		return err
	}
	w.WriteString(`</wsse:Username><wsse:Password Type="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordDigest">`)
	w.WriteString(Digest(nonce, stamp, password))
	w.WriteString(`</wsse:Password><wsse:Nonce EncodingType="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary">`)
	w.WriteString(base64.StdEncoding.EncodeToString(nonce))
	w.WriteString(`</wsse:Nonce><wsu:Created>`)
	w.WriteString(stamp)
	w.WriteString(`</wsu:Created></wsse:UsernameToken></wsse:Security></s:Header>`)
	return nil
}

// Digest is a UsernameToken's password digest.
func Digest(nonce []byte, created, password string) string {
	h := sha1.New()
	h.Write(nonce)
	h.Write([]byte(created))
	h.Write([]byte(password))
	return base64.StdEncoding.EncodeToString(h.Sum(nil))
}

// localName drops a QName's prefix: "ter:NotAuthorized" → "NotAuthorized".
func localName(q string) string {
	if i := strings.LastIndexByte(q, ':'); i >= 0 {
		return q[i+1:]
	}
	return q
}

func xmlEscape(w io.Writer, s string) error { return xml.EscapeText(w, []byte(s)) }
