// Package secret holds configuration values that must never reach a log
// line, an error message or a JSON dump by accident: the broker password and
// camera URLs with credentials in them. The types redact themselves in every
// way Go prints a value (fmt verbs, slog, encoding/json, yaml); code that
// needs the real value asks for it explicitly with Reveal.
package secret

import (
	"encoding/json"
	"log/slog"
	"maps"
	"net/url"
	"slices"
	"strings"
)

const mask = "***"

// String is a secret string such as a password.
type String string

// Reveal returns the secret itself, for the one place that needs it.
func (s String) Reveal() string { return string(s) }

// String returns a mask, or "" when the secret is empty so a missing
// password is still visible as missing.
func (s String) String() string {
	if s == "" {
		return ""
	}
	return mask
}

// GoString keeps %#v from printing the underlying string.
func (s String) GoString() string { return `secret.String("` + s.String() + `")` }

// LogValue redacts the secret in slog output.
func (s String) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalJSON redacts the secret in JSON dumps of a configuration.
func (s String) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// MarshalYAML redacts the secret in YAML dumps of a configuration.
func (s String) MarshalYAML() (any, error) { return s.String(), nil }

// URL is a URL that may carry credentials, such as
// rtsp://admin:pw@10.0.0.2/ch1. Printed, it keeps everything an engineer
// needs to find the camera (scheme, user, host, path) and masks the
// password and query values that look like credentials.
type URL string

// Reveal returns the URL with its credentials.
func (u URL) Reveal() string { return string(u) }

// String returns the URL with the password masked, e.g.
// rtsp://admin:***@10.0.0.2:554/ch1. A URL that does not parse is masked
// entirely, since there is no telling where its password is.
func (u URL) String() string {
	if u == "" {
		return ""
	}
	p, err := url.Parse(string(u))
	if err != nil {
		return mask
	}
	var user string
	if p.User != nil {
		user = url.User(p.User.Username()).String()
		if _, ok := p.User.Password(); ok {
			user += ":" + mask
		}
		user += "@"
	}
	p.User = nil
	if p.RawQuery != "" {
		p.RawQuery = redactQuery(p.Query())
	}
	s := p.String()
	if user == "" || p.Scheme == "" {
		return s
	}
	prefix := p.Scheme + "://"
	return prefix + user + strings.TrimPrefix(s, prefix)
}

// redactQuery masks the values of query parameters that some cameras use
// for credentials (Dahua's ?user=…&password=…, tokens of cloud relays).
func redactQuery(q url.Values) string {
	parts := make([]string, 0, len(q))
	for _, k := range slices.Sorted(maps.Keys(q)) {
		for _, v := range q[k] {
			if looksSecret(k) {
				v = mask
			} else {
				v = url.QueryEscape(v)
			}
			parts = append(parts, url.QueryEscape(k)+"="+v)
		}
	}
	return strings.Join(parts, "&")
}

func looksSecret(key string) bool {
	k := strings.ToLower(key)
	for _, s := range []string{"pass", "pwd", "token", "secret", "key", "auth", "sig"} {
		if strings.Contains(k, s) {
			return true
		}
	}
	return false
}

// GoString keeps %#v from printing the credentials.
func (u URL) GoString() string { return `secret.URL("` + u.String() + `")` }

// LogValue redacts the URL in slog output.
func (u URL) LogValue() slog.Value { return slog.StringValue(u.String()) }

// MarshalJSON redacts the URL in JSON dumps of a configuration.
func (u URL) MarshalJSON() ([]byte, error) { return json.Marshal(u.String()) }

// MarshalYAML redacts the URL in YAML dumps of a configuration.
func (u URL) MarshalYAML() (any, error) { return u.String(), nil }
