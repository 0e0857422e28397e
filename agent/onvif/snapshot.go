package onvif

import (
	"context"
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// SnapshotURI asks the camera where its JPEG snapshots are: the media
// service's address (GetCapabilities), its first media profile
// (GetProfiles) and that profile's snapshot URI (GetSnapshotUri).
func (c *Client) SnapshotURI(ctx context.Context) (string, error) {
	media, err := c.mediaService(ctx)
	if err != nil {
		return "", err
	}
	var profiles struct {
		Profiles []struct {
			Token string `xml:"token,attr"`
		} `xml:"Body>GetProfilesResponse>Profiles"`
	}
	if err := c.callAt(ctx, media, `<trt:GetProfiles xmlns:trt="http://www.onvif.org/ver10/media/wsdl"/>`, true, &profiles); err != nil {
		return "", err
	}
	if len(profiles.Profiles) == 0 || profiles.Profiles[0].Token == "" {
		return "", errors.New("onvif: GetProfiles: the camera has no media profile")
	}
	var snap struct {
		URI string `xml:"Body>GetSnapshotUriResponse>MediaUri>Uri"`
	}
	var body strings.Builder
	body.WriteString(`<trt:GetSnapshotUri xmlns:trt="http://www.onvif.org/ver10/media/wsdl"><trt:ProfileToken>`)
	if err := xmlEscape(&body, profiles.Profiles[0].Token); err != nil {
		return "", err
	}
	body.WriteString(`</trt:ProfileToken></trt:GetSnapshotUri>`)
	if err := c.callAt(ctx, media, body.String(), true, &snap); err != nil {
		return "", err
	}
	uri, err := c.serviceURL(snap.URI)
	if err != nil {
		return "", fmt.Errorf("onvif: GetSnapshotUri: %w", err)
	}
	return uri, nil
}

// mediaService asks the camera where its media service is.
func (c *Client) mediaService(ctx context.Context) (string, error) {
	var caps struct {
		Media string `xml:"Body>GetCapabilitiesResponse>Capabilities>Media>XAddr"`
	}
	if err := c.call(ctx, `<tds:GetCapabilities xmlns:tds="http://www.onvif.org/ver10/device/wsdl"><tds:Category>Media</tds:Category></tds:GetCapabilities>`, true, &caps); err != nil {
		return "", err
	}
	media, err := c.serviceURL(caps.Media)
	if err != nil {
		return "", fmt.Errorf("onvif: GetCapabilities: the media service: %w", err)
	}
	return media, nil
}

// serviceURL checks an address the camera gave: http(s), a host, no
// credentials. Errors do not quote it.
func (c *Client) serviceURL(s string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return "", errors.New("not an http(s) URL without credentials")
	}
	return u.String(), nil
}

// Fetch GETs uri with the client's credentials: HTTP digest when the
// camera asks for it (most do for snapshots), else basic; at most limit
// bytes (limit). Errors do not quote the URI.
func (c *Client) Fetch(ctx context.Context, uri string, limit int64) ([]byte, error) {
	res, err := c.get(ctx, uri, "")
	if err != nil {
		return nil, err
	}
	if res.StatusCode == http.StatusUnauthorized && c.username != "" {
		challenge := res.Header.Get("WWW-Authenticate")
		res.Body.Close()
		auth, err := c.authorization(challenge, uri)
		if err != nil {
			return nil, err
		}
		if res, err = c.get(ctx, uri, auth); err != nil {
			return nil, err
		}
	}
	defer res.Body.Close()
	if res.StatusCode == http.StatusUnauthorized {
		return nil, ErrNotAuthorized
	}
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("onvif: GET snapshot: %s", res.Status)
	}
	data, err := io.ReadAll(io.LimitReader(res.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("onvif: GET snapshot: %w", err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("onvif: the snapshot is over %d bytes", limit)
	}
	return data, nil
}

func (c *Client) get(ctx context.Context, uri, auth string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, uri, nil)
	if err != nil {
		return nil, errors.New("onvif: the snapshot URI is not valid")
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	res, err := c.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error quotes the URI
		}
		return nil, fmt.Errorf("onvif: GET snapshot: %w", err)
	}
	return res, nil
}

// authorization answers a challenge: Digest (MD5, qop auth or none) or
// Basic.
func (c *Client) authorization(challenge, uri string) (string, error) {
	scheme, params, _ := strings.Cut(strings.TrimSpace(challenge), " ")
	switch strings.ToLower(scheme) {
	case "basic":
		req, _ := http.NewRequest(http.MethodGet, "http://x/", nil)
		req.SetBasicAuth(c.username, c.password)
		return req.Header.Get("Authorization"), nil
	case "digest":
	default:
		return "", fmt.Errorf("onvif: the camera asks for %.32q authentication", scheme)
	}
	p := digestParams(params)
	if alg := p["algorithm"]; alg != "" && !strings.EqualFold(alg, "MD5") {
		return "", fmt.Errorf("onvif: digest algorithm %.32q is not supported", alg)
	}
	u, err := url.Parse(uri)
	if err != nil {
		return "", errors.New("onvif: the snapshot URI is not valid")
	}
	path := u.RequestURI()
	ha1 := md5hex(c.username + ":" + p["realm"] + ":" + c.password)
	ha2 := md5hex(http.MethodGet + ":" + path)
	var b strings.Builder
	fmt.Fprintf(&b, `Digest username=%q, realm=%q, nonce=%q, uri=%q`, c.username, p["realm"], p["nonce"], path)
	if qops := strings.Split(p["qop"], ","); p["qop"] != "" {
		auth := false
		for _, q := range qops {
			auth = auth || strings.TrimSpace(q) == "auth"
		}
		if !auth {
			return "", errors.New("onvif: the camera's digest needs a qop other than auth")
		}
		cn := make([]byte, 8)
		if _, err := rand.Read(cn); err != nil {
			return "", err
		}
		cnonce := hex.EncodeToString(cn)
		resp := md5hex(ha1 + ":" + p["nonce"] + ":00000001:" + cnonce + ":auth:" + ha2)
		fmt.Fprintf(&b, `, qop=auth, nc=00000001, cnonce=%q, response=%q`, cnonce, resp)
	} else {
		fmt.Fprintf(&b, `, response=%q`, md5hex(ha1+":"+p["nonce"]+":"+ha2))
	}
	if o := p["opaque"]; o != "" {
		fmt.Fprintf(&b, `, opaque=%q`, o)
	}
	b.WriteString(`, algorithm=MD5`)
	return b.String(), nil
}

// digestParams reads a challenge's key="value" pairs (values may hold
// commas inside quotes).
func digestParams(s string) map[string]string {
	p := map[string]string{}
	for s != "" {
		s = strings.TrimLeft(s, " ,")
		k, rest, ok := strings.Cut(s, "=")
		if !ok {
			break
		}
		k = strings.ToLower(strings.TrimSpace(k))
		var v string
		if strings.HasPrefix(rest, `"`) {
			end := strings.IndexByte(rest[1:], '"')
			if end < 0 {
				break
			}
			v, s = rest[1:1+end], rest[2+end:]
		} else {
			v, s, _ = strings.Cut(rest, ",")
		}
		p[k] = strings.TrimSpace(v)
	}
	return p
}

func md5hex(s string) string {
	h := md5.Sum([]byte(s))
	return hex.EncodeToString(h[:])
}
