package metricstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The spill is a bounded first-in first-out queue of batches on disk: what
// InfluxDB could not take in time waits there, as the line protocol that
// was to be sent, and is replayed oldest first when it answers again, also
// after a restart of the hub.
//
// It is a directory of segment files named by a sequence number
// (00000000000000000001.spill, …). A segment starts with spillMagic and
// holds records, each a header of three little-endian uint32s — payload
// length, points, CRC-32C of the payload — and the payload. Appends go to
// the newest segment until it reaches the segment size; reads start at the
// oldest. A segment is deleted once every record in it has been delivered,
// so replay is at least once: after a restart a partly delivered segment
// is sent again from its start. InfluxDB overwrites a point with the same
// measurement, tags and timestamp, so a point sent twice is stored once.
//
// Durability: a segment is fsynced when it is closed for writing, when the
// spill closes, and at most syncEvery after an append, never per record:
// the spill exists for InfluxDB outages, and a hub that crashes loses the
// points in its memory queue anyway. A process crash loses nothing written
// here (the page cache survives it); a power cut can lose the last second.
// A torn record at a segment's end (a crash mid-write) fails its CRC when
// the spill opens and is cut off.

const (
	spillMagic   = "CWSPILL1"
	spillExt     = ".spill"
	recordHeader = 12
	syncEvery    = time.Second
	// Segment size: an eighth of the spill, so space is given back in
	// steps as replay proceeds, within these bounds.
	minSegment = 64 << 10
	maxSegment = 64 << 20
)

var (
	errSpillFull = errors.New("spill full")
	castagnoli   = crc32.MakeTable(crc32.Castagnoli)
)

// record is one batch read back from the spill.
type record struct {
	seg *segment
	buf []byte // line protocol
	n   int    // points
}

type segment struct {
	seq     uint64
	path    string
	size    int64 // bytes in the file
	records int   // records in the file
	points  int   // points in them
	read    int   // records handed out by next
	readPts int   // points in those
	acked   int   // records delivered (or given up)
	off     int64 // where next reads the next record
}

// spill is safe for concurrent use; every method may do disk I/O under its
// mutex, and none is called from the ingest path.
type spill struct {
	dir     string
	max     int64 // bytes on disk at most
	segSize int64

	mu       sync.Mutex
	segs     []*segment // oldest first; the last one is appended to while w is open
	w        *os.File   // the newest segment, open for appending; nil before the first append
	r        *os.File   // the segment being read
	rseg     *segment
	retry    []*record // handed out, not delivered: handed out again first
	bytes    int64
	points   int // in records not yet acked
	nextSeq  uint64
	dirty    bool
	lastSync time.Time

	avail chan struct{} // signalled when a record may be ready
}

// openSpill opens (creating) the spill in dir, bounded to limit bytes. It
// checks every segment left by an earlier run and cuts off a torn tail.
func openSpill(dir string, limit int64) (*spill, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("metricstore: spill: %w", err)
	}
	s := &spill{dir: dir, max: limit, segSize: min(max(limit/8, minSegment), maxSegment),
		nextSeq: 1, avail: make(chan struct{}, 1)}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("metricstore: spill: %w", err)
	}
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), spillExt)
		seq, err := strconv.ParseUint(name, 10, 64)
		if !ok || err != nil || e.IsDir() {
			continue
		}
		seg, err := scanSegment(filepath.Join(dir, e.Name()), seq)
		if err != nil {
			return nil, fmt.Errorf("metricstore: spill: %w", err)
		}
		s.nextSeq = max(s.nextSeq, seq+1)
		if seg.records == 0 {
			if err := os.Remove(seg.path); err != nil {
				return nil, fmt.Errorf("metricstore: spill: %w", err)
			}
			continue
		}
		s.segs = append(s.segs, seg)
		s.bytes += seg.size
		s.points += seg.points
	}
	slices.SortFunc(s.segs, func(a, b *segment) int { return cmpUint(a.seq, b.seq) })
	if len(s.segs) > 0 {
		s.signal()
	}
	return s, nil
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// scanSegment counts a segment's valid records and truncates the file
// after the last one.
func scanSegment(path string, seq uint64) (*segment, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	seg := &segment{seq: seq, path: path}
	magic := make([]byte, len(spillMagic))
	if _, err := io.ReadFull(f, magic); err != nil || string(magic) != spillMagic {
		// Not even a header: a segment created just before a crash.
		return seg, nil
	}
	off := int64(len(spillMagic))
	var hdr [recordHeader]byte
	var payload []byte
	for {
		n, p, err := readRecord(f, off, &hdr, payload)
		if err != nil {
			break
		}
		payload = p
		seg.records++
		seg.points += n
		off += recordHeader + int64(len(p))
	}
	if err := f.Truncate(off); err != nil {
		return nil, err
	}
	seg.size = off
	seg.off = int64(len(spillMagic))
	return seg, nil
}

// readRecord reads the record at off into buf (grown as needed) and checks
// it; it returns the points and the payload.
func readRecord(f io.ReaderAt, off int64, hdr *[recordHeader]byte, buf []byte) (int, []byte, error) {
	if _, err := f.ReadAt(hdr[:], off); err != nil {
		return 0, buf, err
	}
	size := binary.LittleEndian.Uint32(hdr[0:])
	points := binary.LittleEndian.Uint32(hdr[4:])
	sum := binary.LittleEndian.Uint32(hdr[8:])
	if size == 0 || size > maxSegment || points == 0 {
		return 0, buf, errors.New("bad record header")
	}
	buf = slices.Grow(buf[:0], int(size))[:size]
	if _, err := f.ReadAt(buf, off+recordHeader); err != nil {
		return 0, buf, err
	}
	if crc32.Checksum(buf, castagnoli) != sum {
		return 0, buf, errors.New("record checksum mismatch")
	}
	return int(points), buf, nil
}

// append adds a batch of n points. It fails with errSpillFull when the
// batch does not fit, or with the disk's error.
func (s *spill) append(buf []byte, n int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	rotate := s.w == nil || s.segs[len(s.segs)-1].size >= s.segSize
	need := int64(recordHeader + len(buf))
	if rotate {
		need += int64(len(spillMagic))
	}
	if s.bytes+need > s.max {
		return errSpillFull
	}
	if len(buf) > maxSegment {
		return fmt.Errorf("metricstore: spill: a batch of %d bytes is larger than a segment may be", len(buf))
	}
	if rotate {
		if err := s.rotate(); err != nil {
			return err
		}
	}
	seg := s.segs[len(s.segs)-1]
	rec := make([]byte, recordHeader, recordHeader+len(buf))
	binary.LittleEndian.PutUint32(rec[0:], uint32(len(buf)))
	binary.LittleEndian.PutUint32(rec[4:], uint32(n))
	binary.LittleEndian.PutUint32(rec[8:], crc32.Checksum(buf, castagnoli))
	if _, err := s.w.Write(append(rec, buf...)); err != nil {
		// Cut off whatever part was written, so the next record starts
		// where the file says.
		_ = s.w.Truncate(seg.size)
		_, _ = s.w.Seek(seg.size, io.SeekStart)
		return fmt.Errorf("metricstore: spill: %w", err)
	}
	seg.size += recordHeader + int64(len(buf))
	seg.records++
	seg.points += n
	s.bytes += recordHeader + int64(len(buf))
	s.points += n
	s.dirty = true
	if time.Since(s.lastSync) >= syncEvery {
		s.syncLocked()
	}
	s.signal()
	return nil
}

// rotate closes the segment being written, synced, and starts a new one.
func (s *spill) rotate() error {
	if s.w != nil {
		s.syncLocked()
		if err := s.w.Close(); err != nil {
			s.w = nil
			return fmt.Errorf("metricstore: spill: %w", err)
		}
		s.w = nil
	}
	seg := &segment{seq: s.nextSeq, off: int64(len(spillMagic))}
	seg.path = filepath.Join(s.dir, fmt.Sprintf("%020d%s", seg.seq, spillExt))
	f, err := os.OpenFile(seg.path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("metricstore: spill: %w", err)
	}
	if _, err := f.WriteString(spillMagic); err != nil {
		f.Close()
		os.Remove(seg.path)
		return fmt.Errorf("metricstore: spill: %w", err)
	}
	s.nextSeq++
	s.w = f
	seg.size = int64(len(spillMagic))
	s.segs = append(s.segs, seg)
	s.bytes += seg.size
	syncDir(s.dir)
	return nil
}

// next returns the oldest record not handed out yet (records given back
// with nack first), or nil when there is none. Records that cannot be read
// any more (the disk changed under the hub) are skipped, and their points
// returned as lost.
func (s *spill) next() (rec *record, lost int, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.retry) > 0 {
		rec = s.retry[0]
		s.retry = s.retry[1:]
		return rec, 0, nil
	}
	for _, seg := range s.segs {
		if seg.read == seg.records {
			continue
		}
		if s.rseg != seg {
			if s.r != nil {
				s.r.Close()
				s.r = nil
			}
			f, err := os.Open(seg.path)
			if err != nil {
				return nil, s.abandon(seg), fmt.Errorf("metricstore: spill: %w", err)
			}
			s.r, s.rseg = f, seg
		}
		var hdr [recordHeader]byte
		n, buf, err := readRecord(s.r, seg.off, &hdr, nil)
		if err != nil {
			return nil, s.abandon(seg), fmt.Errorf("metricstore: spill: %s: %w", seg.path, err)
		}
		seg.off += recordHeader + int64(len(buf))
		seg.read++
		seg.readPts += n
		return &record{seg: seg, buf: buf, n: n}, 0, nil
	}
	return nil, 0, nil
}

// abandon gives up the unread rest of seg, which cannot be read, and
// returns its points.
func (s *spill) abandon(seg *segment) int {
	lost := seg.points - seg.readPts
	skipped := seg.records - seg.read
	seg.read, seg.readPts = seg.records, seg.points
	s.points -= lost
	seg.acked += skipped
	s.release(seg)
	return lost
}

// ack marks rec delivered (or given up for good): a segment whose records
// are all acked is deleted.
func (s *spill) ack(rec *record) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec.seg.acked++
	s.points -= rec.n
	s.release(rec.seg)
}

// nack gives rec back, to be handed out again first.
func (s *spill) nack(rec *record) {
	s.mu.Lock()
	s.retry = append(s.retry, rec)
	s.mu.Unlock()
	s.signal()
}

// release deletes seg if it is done: every record written to it read and
// acked. The segment being written is deleted too, and the next append
// starts a new one, so an emptied spill takes no space.
func (s *spill) release(seg *segment) {
	if seg.acked < seg.records || seg.read < seg.records {
		return
	}
	i := slices.Index(s.segs, seg)
	if i < 0 {
		return
	}
	if s.rseg == seg {
		s.r.Close()
		s.r, s.rseg = nil, nil
	}
	if i == len(s.segs)-1 && s.w != nil {
		s.w.Close()
		s.w = nil
		s.dirty = false
	}
	// A segment that cannot be removed is forgotten all the same: the
	// next start replays it (a duplicate, which InfluxDB absorbs).
	_ = os.Remove(seg.path)
	s.segs = slices.Delete(s.segs, i, i+1)
	s.bytes -= seg.size
}

// sync flushes the segment being written if it changed since the last
// sync.
func (s *spill) sync() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.syncLocked()
}

func (s *spill) syncLocked() {
	if s.w != nil && s.dirty {
		_ = s.w.Sync()
	}
	s.dirty = false
	s.lastSync = time.Now()
}

// close syncs and closes the files; records handed out and not acked stay
// on disk for the next start.
func (s *spill) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	if s.w != nil {
		if s.dirty {
			errs = append(errs, s.w.Sync())
		}
		errs = append(errs, s.w.Close())
		s.w = nil
	}
	if s.r != nil {
		s.r.Close()
		s.r, s.rseg = nil, nil
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("metricstore: spill: %w", err)
	}
	return nil
}

// signal tells the replayer a record may be ready.
func (s *spill) signal() {
	select {
	case s.avail <- struct{}{}:
	default:
	}
}

// spillStats is what /metrics and Status show of the spill.
type spillStats struct {
	Bytes, Max int64
	Segments   int
	Points     int
}

func (s *spill) stats() spillStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return spillStats{Bytes: s.bytes, Max: s.max, Segments: len(s.segs), Points: s.points}
}

// syncDir makes a created or removed file's directory entry durable.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}
