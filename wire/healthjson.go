package wire

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// decodeHealth is decodeInto for health reports, the bulk of the hub's
// traffic (a line per device per interval), without encoding/json's
// reflection. The hand-written parser takes what agents emit and gives up
// on anything else: a syntax or type error, a missing or other version, a
// repeated key (encoding/json merges repeats), a key that needs unescaping
// or matches a field only case-insensitively, deep nesting in an unknown
// field. decodeInto then decides, so errors and odd inputs come out exactly
// as encoding/json has them.
func decodeHealth(payload []byte, h *Health) error {
	p := healthParser{data: payload}
	if p.health(h) {
		return nil
	}
	*h = Health{}
	return decodeInto(payload, h)
}

// The JSON keys of each struct the parser fills; a test checks them
// against the struct tags.
var (
	healthKeys       = []string{"v", "agent", "boot", "seq", "ts", "interval_s", "devices", "dropped"}
	deviceHealthKeys = []string{"id", "status", "reason", "detail", "since", "probed", "metrics", "triggered"}
	droppedKeys      = []string{"health", "events"}
)

// recurring holds the strings that come on every line of every report,
// so that decoding them does not allocate a copy each time. Any other
// string is copied.
var recurring = func() map[string]string {
	m := map[string]string{}
	for _, s := range []string{
		string(StatusOnline), string(StatusDegraded), string(StatusOffline), string(StatusUnknown),
		string(ReasonUnreachable), string(ReasonRefused), string(ReasonAuthFailed), string(ReasonNoStream),
		string(ReasonTimeout), string(ReasonLowFrameRate), string(ReasonSupervisionLost), string(ReasonTamper),
		string(ReasonProbeError),
		MetricTCPMillis, MetricRTSPMillis, MetricFPS, MetricBitrateKbps, MetricFrameAge, MetricCheckinAge,
		MetricBatteryPct, MetricSignalDBm, MetricProbeFailures,
	} {
		m[s] = s
	}
	return m
}()

// idKey starts every line of a report's devices.
var idKey = []byte(`"id":`)

// maxParseDepth bounds the nesting the parser follows into unknown fields;
// it gives up beyond, well before encoding/json's own limit of 10000.
const maxParseDepth = 64

// healthParser reads one Health from data. Every method reports whether it
// could; after a failure the parser and what it filled in are garbage. A
// value reader given null leaves its target alone, as encoding/json does
// (the target is still zero: repeated keys are refused).
type healthParser struct {
	data  []byte
	pos   int
	depth int
}

func (p *healthParser) health(h *Health) bool {
	versioned := false
	ok := p.fields(healthKeys, func(key string) bool {
		switch key {
		case "v":
			tok, ok := p.number()
			if !ok || tok == nil { // null: decodeInto calls the version missing
				return false
			}
			n, err := strconv.ParseInt(string(tok), 10, 64)
			h.V = int(n)
			versioned = err == nil && n == Version
			return versioned
		case "agent":
			return p.text(&h.Agent)
		case "boot":
			return p.int64(&h.Boot)
		case "seq":
			return p.uint64(&h.Seq)
		case "ts":
			return p.time(&h.TS)
		case "interval_s":
			return p.float(&h.Interval)
		case "devices":
			return p.devices(&h.Devices)
		default: // "dropped"
			return p.dropped(&h.Dropped)
		}
	})
	p.space()
	return ok && versioned && p.pos == len(p.data)
}

func (p *healthParser) devices(ds *[]DeviceHealth) bool {
	p.space()
	if p.null() {
		return true
	}
	// Room for every line at once, not grown line by line (2.5 times
	// the lines' 128 bytes each in copies): a line per "id" key, counted
	// fast. An estimate: an "id" key in an unknown field makes room for
	// one line more, a spaced-out key one less; both only change the
	// capacity. [] decodes to an empty slice, not nil.
	*ds = make([]DeviceHealth, 0, bytes.Count(p.data[p.pos:], idKey))
	return p.array(func() bool {
		*ds = append(*ds, DeviceHealth{})
		return p.deviceHealth(&(*ds)[len(*ds)-1])
	})
}

func (p *healthParser) deviceHealth(d *DeviceHealth) bool {
	p.space()
	if p.null() {
		return true
	}
	return p.fields(deviceHealthKeys, func(key string) bool {
		switch key {
		case "id":
			return p.text(&d.ID)
		case "status":
			return p.text((*string)(&d.Status))
		case "reason":
			return p.text((*string)(&d.Reason))
		case "detail":
			return p.text(&d.Detail)
		case "since":
			return p.time(&d.Since)
		case "probed":
			return p.time(&d.Probed)
		case "metrics":
			return p.metrics(&d.Metrics)
		default: // "triggered"
			return p.boolean(&d.Triggered)
		}
	})
}

func (p *healthParser) metrics(m *map[string]float64) bool {
	p.space()
	if p.null() {
		return true
	}
	*m = map[string]float64{} // {} decodes to an empty map, not nil
	return p.object(func(key []byte, plain bool) bool {
		name, ok := unquote(key, plain)
		if !ok {
			return false
		}
		var v float64 // null stores 0, as encoding/json does
		if !p.float(&v) {
			return false
		}
		(*m)[name] = v
		return true
	})
}

func (p *healthParser) dropped(d **Dropped) bool {
	p.space()
	if p.null() {
		return true
	}
	*d = new(Dropped)
	return p.fields(droppedKeys, func(key string) bool {
		if key == "health" {
			return p.uint64(&(*d).Health)
		}
		return p.uint64(&(*d).Events)
	})
}

// fields reads an object into a struct whose keys are names, calling value
// with each key present; unknown keys are skipped. It gives up on a
// repeated key and on one that matches a name only after unescaping or
// case folding, both of which encoding/json handles in its own way.
func (p *healthParser) fields(names []string, value func(key string) bool) bool {
	var seen uint64
	return p.object(func(key []byte, plain bool) bool {
		if !plain {
			return false
		}
		k := key[1 : len(key)-1]
		for i, name := range names {
			if string(k) == name {
				if seen&(1<<i) != 0 {
					return false
				}
				seen |= 1 << i
				return value(name)
			}
		}
		for _, name := range names {
			if strings.EqualFold(string(k), name) {
				return false
			}
		}
		return p.skip()
	})
}

// object reads an object, calling member with each key (a string token,
// quotes included; plain as from str) and the parser at its value, which
// member must consume.
func (p *healthParser) object(member func(key []byte, plain bool) bool) bool {
	p.space()
	if !p.enter('{') {
		return false
	}
	p.space()
	if p.eat('}') {
		p.depth--
		return true
	}
	for {
		key, plain, ok := p.str()
		if !ok {
			return false
		}
		p.space()
		if !p.eat(':') || !member(key, plain) {
			return false
		}
		p.space()
		switch {
		case p.eat(','):
			p.space()
		case p.eat('}'):
			p.depth--
			return true
		default:
			return false
		}
	}
}

// array reads an array, calling elem with the parser at each element,
// which elem must consume.
func (p *healthParser) array(elem func() bool) bool {
	p.space()
	if !p.enter('[') {
		return false
	}
	p.space()
	if p.eat(']') {
		p.depth--
		return true
	}
	for {
		if !elem() {
			return false
		}
		p.space()
		switch {
		case p.eat(','):
		case p.eat(']'):
			p.depth--
			return true
		default:
			return false
		}
	}
}

// skip reads a value of any kind and throws it away.
func (p *healthParser) skip() bool {
	p.space()
	switch p.peek() {
	case '{':
		return p.object(func([]byte, bool) bool { return p.skip() })
	case '[':
		return p.array(p.skip)
	case '"':
		_, _, ok := p.str()
		return ok
	case 't':
		return p.literal("true")
	case 'f':
		return p.literal("false")
	default: // a number or null
		_, ok := p.number()
		return ok
	}
}

func (p *healthParser) text(s *string) bool {
	p.space()
	if p.null() {
		return true
	}
	tok, plain, ok := p.str()
	if !ok {
		return false
	}
	*s, ok = unquote(tok, plain)
	return ok
}

// unquote returns the text of a string token. Escapes and invalid UTF-8
// are rare, so encoding/json unquotes those, replacement characters and
// all.
func unquote(tok []byte, plain bool) (string, bool) {
	if plain {
		text := tok[1 : len(tok)-1]
		if s, ok := recurring[string(text)]; ok {
			return s, true
		}
		return string(text), true
	}
	var s string
	err := json.Unmarshal(tok, &s)
	return s, err == nil
}

// time reads a time as encoding/json does: the token, quotes and any
// escapes included, goes to time.Time.UnmarshalJSON.
func (p *healthParser) time(t *time.Time) bool {
	p.space()
	if p.null() {
		return true
	}
	tok, _, ok := p.str()
	return ok && t.UnmarshalJSON(tok) == nil
}

// float, int64 and uint64 are written out rather than one generic helper
// taking a parse func: through a func value string(tok) escapes, which
// cost 457 more allocations per 100-device report (339 -> 796).
func (p *healthParser) float(f *float64) bool {
	tok, ok := p.number()
	if !ok || tok == nil {
		return ok
	}
	v, err := strconv.ParseFloat(string(tok), 64)
	*f = v
	return err == nil
}

func (p *healthParser) int64(n *int64) bool {
	tok, ok := p.number()
	if !ok || tok == nil {
		return ok
	}
	v, err := strconv.ParseInt(string(tok), 10, 64)
	*n = v
	return err == nil
}

func (p *healthParser) uint64(n *uint64) bool {
	tok, ok := p.number()
	if !ok || tok == nil {
		return ok
	}
	v, err := strconv.ParseUint(string(tok), 10, 64)
	*n = v
	return err == nil
}

func (p *healthParser) boolean(b *bool) bool {
	p.space()
	switch {
	case p.literal("true"):
		*b = true
	case p.literal("false"):
		*b = false
	default:
		return p.null()
	}
	return true
}

// number reads a number and returns its text, or nil for null.
func (p *healthParser) number() ([]byte, bool) {
	p.space()
	if p.null() {
		return nil, true
	}
	start := p.pos
	p.eat('-')
	if !p.eat('0') && p.digits() == 0 {
		return nil, false
	}
	if p.eat('.') && p.digits() == 0 {
		return nil, false
	}
	if p.eat('e') || p.eat('E') {
		_ = p.eat('+') || p.eat('-')
		if p.digits() == 0 {
			return nil, false
		}
	}
	return p.data[start:p.pos], true
}

func (p *healthParser) digits() int {
	start := p.pos
	for p.pos < len(p.data) && p.data[p.pos] >= '0' && p.data[p.pos] <= '9' {
		p.pos++
	}
	return p.pos - start
}

// str reads a string and returns its token, quotes included. plain reports
// that the text between the quotes is the value as it is: no escapes,
// valid UTF-8.
func (p *healthParser) str() (tok []byte, plain, ok bool) {
	start := p.pos
	if !p.eat('"') {
		return nil, false, false
	}
	escaped, ascii := false, true
	for p.pos < len(p.data) {
		switch c := p.data[p.pos]; {
		case c == '"':
			p.pos++
			tok = p.data[start:p.pos]
			return tok, !escaped && (ascii || utf8.Valid(tok)), true
		case c == '\\':
			escaped = true
			if !p.escape() {
				return nil, false, false
			}
		case c < ' ':
			return nil, false, false
		default:
			ascii = ascii && c < utf8.RuneSelf
			p.pos++
		}
	}
	return nil, false, false
}

// escape steps over one well-formed escape sequence.
func (p *healthParser) escape() bool {
	if p.pos+1 >= len(p.data) {
		return false
	}
	switch p.data[p.pos+1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		p.pos += 2
		return true
	case 'u':
		if p.pos+6 > len(p.data) {
			return false
		}
		for _, c := range p.data[p.pos+2 : p.pos+6] {
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
		p.pos += 6
		return true
	}
	return false
}

func (p *healthParser) null() bool { return p.literal("null") }

func (p *healthParser) literal(s string) bool {
	if !bytes.HasPrefix(p.data[p.pos:], []byte(s)) {
		return false
	}
	p.pos += len(s)
	return true
}

// enter steps into an object or array.
func (p *healthParser) enter(open byte) bool {
	if p.depth == maxParseDepth || !p.eat(open) {
		return false
	}
	p.depth++
	return true
}

func (p *healthParser) space() {
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

func (p *healthParser) peek() byte {
	if p.pos == len(p.data) {
		return 0
	}
	return p.data[p.pos]
}

func (p *healthParser) eat(c byte) bool {
	if p.peek() != c {
		return false
	}
	p.pos++
	return true
}
