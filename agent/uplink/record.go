package uplink

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"

	"github.com/citywatch/citywatch/wire"
)

// A spool record is one queued item, stamped and encoded:
//
//	u32 body length | u32 CRC-32C of the body | body
//	body: u8 kind | i64 made (Unix ns) | u32 epoch | u8 parts | u8 tries |
//	      parts × (u64 seq | u32 length | message)
//
// All integers are little-endian. The length and checksum let a reader
// tell a whole record from a torn or damaged one; the sequence numbers are
// outside the message so the backlog can be merged without decoding JSON.
// tries (see publishFailed) took the high byte of what was a u16 count of
// parts, at most maxParts, so an earlier version's records, which
// openSpool counts, read as before.
const (
	recordHeader = 8
	bodyFixed    = 1 + 8 + 4 + 2
	partFixed    = 8 + 4
	// maxParts and maxRecord bound what a reader believes of a length:
	// a report of wire.MaxDevices lines takes a few parts of at most
	// wire.MaxPayload each.
	maxParts  = 64
	maxRecord = maxParts * (partFixed + wire.MaxPayload)
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errCorrupt marks a record whose length, checksum or layout is wrong.
var errCorrupt = errors.New("corrupt spool record")

// encodeRecord appends it to b as a record.
func encodeRecord(b []byte, it item) []byte {
	start := len(b)
	b = append(b, make([]byte, recordHeader)...)
	b = append(b, byte(it.kind))
	b = binary.LittleEndian.AppendUint64(b, uint64(it.made.UnixNano()))
	b = binary.LittleEndian.AppendUint32(b, it.epoch)
	b = append(b, byte(len(it.parts)), it.tries)
	for _, p := range it.parts {
		b = binary.LittleEndian.AppendUint64(b, p.seq)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(p.data)))
		b = append(b, p.data...)
	}
	body := b[start+recordHeader:]
	binary.LittleEndian.PutUint32(b[start:], uint32(len(body)))
	binary.LittleEndian.PutUint32(b[start+4:], crc32.Checksum(body, castagnoli))
	return b
}

// recordSize is the encoded size of it.
func recordSize(it item) int64 {
	n := int64(recordHeader + bodyFixed)
	for _, p := range it.parts {
		n += partFixed + int64(len(p.data))
	}
	return n
}

// recordLen reads a record header: the body length and its checksum. A
// length no writer produces is corrupt.
func recordLen(h []byte) (n int, sum uint32, err error) {
	if len(h) < recordHeader {
		return 0, 0, fmt.Errorf("%w: %d-byte header", errCorrupt, len(h))
	}
	n = int(binary.LittleEndian.Uint32(h))
	if n < bodyFixed+partFixed || n > maxRecord {
		return 0, 0, fmt.Errorf("%w: body length %d", errCorrupt, n)
	}
	return n, binary.LittleEndian.Uint32(h[4:]), nil
}

// decodeRecord decodes the record at the start of b and returns it with
// the bytes it took. The item's messages alias b.
func decodeRecord(b []byte) (item, int, error) {
	n, sum, err := recordLen(b)
	if err != nil {
		return item{}, 0, err
	}
	if len(b) < recordHeader+n {
		return item{}, 0, fmt.Errorf("%w: %d bytes of a %d-byte record", errCorrupt, len(b), recordHeader+n)
	}
	body := b[recordHeader : recordHeader+n]
	if crc32.Checksum(body, castagnoli) != sum {
		return item{}, 0, fmt.Errorf("%w: checksum mismatch", errCorrupt)
	}
	it, err := decodeBody(body)
	if err != nil {
		return item{}, 0, err
	}
	return it, recordHeader + n, nil
}

func decodeBody(body []byte) (item, error) {
	it := item{
		kind:  kind(body[0]),
		made:  time.Unix(0, int64(binary.LittleEndian.Uint64(body[1:]))),
		epoch: binary.LittleEndian.Uint32(body[9:]),
	}
	parts := int(body[13])
	it.tries = body[14]
	switch {
	case !it.kind.spooled():
		return item{}, fmt.Errorf("%w: kind %d", errCorrupt, it.kind)
	case parts == 0 || parts > maxParts || (parts > 1 && it.kind != kindHealth):
		return item{}, fmt.Errorf("%w: %d parts of a %s", errCorrupt, parts, it.kind)
	}
	rest := body[bodyFixed:]
	it.parts = make([]part, 0, parts)
	for range parts {
		if len(rest) < partFixed {
			return item{}, fmt.Errorf("%w: part header cut short", errCorrupt)
		}
		p := part{seq: binary.LittleEndian.Uint64(rest)}
		size := int(binary.LittleEndian.Uint32(rest[8:]))
		rest = rest[partFixed:]
		if size > len(rest) {
			return item{}, fmt.Errorf("%w: part of %d bytes, %d left", errCorrupt, size, len(rest))
		}
		p.data, rest = rest[:size:size], rest[size:]
		if n := len(it.parts); n > 0 && p.seq <= it.parts[n-1].seq {
			return item{}, fmt.Errorf("%w: part seq %d after %d", errCorrupt, p.seq, it.parts[n-1].seq)
		}
		it.parts = append(it.parts, p)
	}
	if len(rest) != 0 {
		return item{}, fmt.Errorf("%w: %d bytes after the last part", errCorrupt, len(rest))
	}
	return it, nil
}
