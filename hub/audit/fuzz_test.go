package audit

import (
	"encoding/binary"
	"errors"
	"net/url"
	"testing"
	"time"
)

// FuzzParseFilter feeds query strings to the parser: it never panics, and
// what it accepts is a valid filter that Values writes back unchanged.
func FuzzParseFilter(f *testing.F) {
	for _, s := range []string{
		"", "actor=ann&action=alarm.&limit=10", "from=2026-11-28T12:00:00%2B08:00&to=2026-11-29T00:00:00Z",
		"format=csv&q=%C3%A4rger", "before=18446744073709551615", "limit=1001", "outcome=denied&remote=::1",
		"action=*", "from=1600-01-01T00:00:00Z", "actor=%ff", "x=1&x=2", "limit=-1", "before=0&limit=",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		flt, format, err := ParseFilter(q)
		if err != nil {
			return
		}
		if err := flt.Check(); err != nil {
			t.Fatalf("ParseFilter(%q) accepted an invalid filter: %v", raw, err)
		}
		if format != FormatJSON && format != FormatCSV && format != FormatJSONL {
			t.Fatalf("ParseFilter(%q) accepted format %q", raw, format)
		}
		again, _, err := ParseFilter(flt.Values())
		if err != nil || !filtersEqual(again, flt) {
			t.Fatalf("ParseFilter(%q) = %+v, but its Values read back as %+v, %v", raw, flt, again, err)
		}
	})
}

// decodeCanonical reads canonical's encoding back; that it recovers every
// record, consuming exactly the bytes written, proves no two records
// encode alike.
func decodeCanonical(b []byte) (Record, error) {
	var r Record
	if len(b) < 17 || b[0] != canonVersion {
		return r, errors.New("short or wrong version")
	}
	r.Seq = binary.BigEndian.Uint64(b[1:])
	r.At = time.Unix(0, int64(binary.BigEndian.Uint64(b[9:]))).UTC()
	b = b[17:]
	var outcome string
	for _, f := range []*string{&r.Actor, &r.Role, &r.Session, &r.Remote, &r.Action, &r.Object, &outcome, &r.Detail} {
		if len(b) < 4 {
			return r, errors.New("truncated length")
		}
		n := binary.BigEndian.Uint32(b)
		b = b[4:]
		if uint64(len(b)) < uint64(n) {
			return r, errors.New("truncated field")
		}
		*f, b = string(b[:n]), b[n:]
	}
	r.Outcome = Outcome(outcome)
	if len(b) != 0 {
		return r, errors.New("trailing bytes")
	}
	return r, nil
}

func FuzzCanonical(f *testing.F) {
	f.Add(uint64(1), t0.UnixNano(), "ann", "operator", "s1", "10.0.0.1", "alarm.ack", "alarm/A-1", "success", "note")
	f.Add(uint64(2), int64(0), "ab", "", "", "", "c", "", "", "")
	f.Add(uint64(2), int64(-1), "a", "b", "", "", "c", "", "", "\x00\x00\x00\x01")
	f.Fuzz(func(t *testing.T, seq uint64, at int64, actor, role, session, remote, action, object, outcome, detail string) {
		r := Record{
			Seq: seq, At: time.Unix(0, at).UTC(), Actor: actor, Role: role, Session: session, Remote: remote,
			Action: action, Object: object, Outcome: Outcome(outcome), Detail: detail,
		}
		got, err := decodeCanonical(canonical(&r))
		if err != nil || got != r {
			t.Fatalf("canonical(%+v) decodes to %+v, %v", r, got, err)
		}
	})
}
