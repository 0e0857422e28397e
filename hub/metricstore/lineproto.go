package metricstore

import (
	"math"
	"strconv"
	"time"
)

// The writer encodes points straight into InfluxDB line protocol,
// appending to a batch's buffer: no point objects, no maps, no sorting,
// and the bytes are what goes on the wire and into the spill as they are.
// A line is
//
//	measurement,tag=value,… field=value,… milliseconds\n
//
// Tags are written in key order (InfluxDB sorts them otherwise), empty tag
// values are left out (line protocol has none), and values that cannot be
// stored (NaN, ±Inf) leave their field out rather than failing the batch.

// line builds one line; the zero value is not ready, use newLine.
type line struct {
	b      []byte
	fields int // fields written so far
}

// newLine starts a line of measurement (a constant that needs no escaping)
// at the end of b.
func newLine(b []byte, measurement string) line {
	return line{b: append(b, measurement...)}
}

// tag appends ,key=value unless value is empty. Keys are constants; tags
// must be added in key order.
func (l *line) tag(key, value string) {
	if value == "" {
		return
	}
	l.b = append(l.b, ',')
	l.b = append(l.b, key...)
	l.b = append(l.b, '=')
	l.b = appendTagValue(l.b, value)
}

// sep writes what comes before a field: a space before the first, a comma
// before the others.
func (l *line) sep() {
	if l.fields == 0 {
		l.b = append(l.b, ' ')
	} else {
		l.b = append(l.b, ',')
	}
	l.fields++
}

func (l *line) str(key, value string) {
	l.sep()
	l.b = appendTagValue(l.b, key)
	l.b = append(l.b, '=', '"')
	l.b = appendStringValue(l.b, value)
	l.b = append(l.b, '"')
}

func (l *line) int(key string, v int64) {
	l.sep()
	l.b = appendTagValue(l.b, key)
	l.b = append(l.b, '=')
	l.b = strconv.AppendInt(l.b, v, 10)
	l.b = append(l.b, 'i')
}

// float writes the field unless v is NaN or infinite, which line protocol
// cannot carry, or key is empty (metric names are validated on the wire;
// an empty one would fail the whole batch).
func (l *line) float(key string, v float64) {
	if key == "" || math.IsNaN(v) || math.IsInf(v, 0) {
		return
	}
	l.sep()
	l.b = appendTagValue(l.b, key)
	l.b = append(l.b, '=')
	if v == math.Trunc(v) && math.Abs(v) < 1e15 && !math.Signbit(v) {
		// Whole numbers (fps, kbit/s, counts) are most values: writing
		// them as integers is several times cheaper and the same text.
		l.b = strconv.AppendInt(l.b, int64(v), 10)
		return
	}
	l.b = strconv.AppendFloat(l.b, v, 'f', -1, 64)
}

// end writes the timestamp in milliseconds and the newline, and returns
// the buffer. A line without fields is not valid: it is taken back and
// reported as not written.
func (l *line) end(start int, at time.Time) ([]byte, bool) {
	if l.fields == 0 {
		return l.b[:start], false
	}
	l.b = append(l.b, ' ')
	l.b = strconv.AppendInt(l.b, at.UnixMilli(), 10)
	return append(l.b, '\n'), true
}

// appendTagValue escapes a tag value, and a field key (metric names are
// valid by wire validation, so for keys it is a guard). A backslash becomes '/': line
// protocol cannot carry every backslash sequence (a value ending in one
// escapes the separator after it), and InfluxDB rejects a whole batch for
// one line it cannot parse. IDs are backslash-free by wire validation;
// district names are free text.
func appendTagValue(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case ',', '=', ' ':
			b = append(b, '\\', c)
		case '\\':
			b = append(b, '/')
		case '\t', '\n', '\f', '\r':
			b = append(b, '\\', controlEscape(c))
		default:
			b = append(b, c)
		}
	}
	return b
}

// appendStringValue escapes a string field's value: quotes and backslashes
// are escaped; control characters are written as \n, \t… (InfluxDB 1.8
// keeps those two characters, as the client library did).
func appendStringValue(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\t', '\n', '\f', '\r':
			b = append(b, '\\', controlEscape(c))
		default:
			b = append(b, c)
		}
	}
	return b
}

func controlEscape(c byte) byte {
	switch c {
	case '\t':
		return 't'
	case '\n':
		return 'n'
	case '\f':
		return 'f'
	default:
		return 'r'
	}
}
