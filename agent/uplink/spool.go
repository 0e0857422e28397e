package uplink

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// spoolFile is one segment: written at the offset the spool keeps, read
// back by offset. *os.File is one; tests inject failing ones.
type spoolFile interface {
	io.ReaderAt
	io.WriterAt
	io.Closer
}

// spoolCounters are the spool's counters; the client owns them, so they
// outlive a spool that failed or closed.
type spoolCounters struct {
	spooled atomic.Uint64 // items written
	resent  atomic.Uint64 // spooled messages the broker acknowledged
	corrupt atomic.Uint64 // records lost to a bad length or checksum
	errors  atomic.Uint64 // disk errors: open, create, write, read
	stale   atomic.Uint64 // items an earlier run left, discarded at start
}

type spoolOptions struct {
	root  string // the configured directory; each run works in its own subdirectory
	quota int64  // bytes of records waiting
	// segment is the size at which a segment file is closed for appends
	// and a new one started; 0 derives it from the quota.
	segment int64
	// create opens a new segment file; nil means the file system.
	create func(path string) (spoolFile, error)
	// drop is told what the quota or damage cost, by kind.
	drop     func(k kind, n uint64, why string)
	counters *spoolCounters
}

// Segment sizes derived from the quota: small enough that a consumed
// segment is soon deleted, large enough not to churn files.
const (
	minSegment = 64 << 10
	maxSegment = 4 << 20
)

const (
	chainHealth = iota
	chainEvents // events and snapshots
)

// spool is the on-disk backlog: items that could not be sent when made,
// in two chains of segment files, health reports and events (with
// snapshots), so that the oldest health report can be dropped without
// rewriting anything. Each chain is in seq order, but for a message put
// back after a failed publish (see putBack); peek merges the two by seq,
// so the backlog leaves in the order it was made. The quota counts
// the bytes of records still waiting; consumed records at the head of a
// segment take disk space until the segment is done, at most about one
// segment per chain more than the quota. Nothing is synced: the spool is
// discarded when the agent restarts (see openSpool), so a crash loses
// nothing a sync would have saved.
type spool struct {
	opts spoolOptions
	dir  string    // this run's directory
	lock io.Closer // held while the run lasts

	mu     sync.Mutex // guards the fields below
	chains [2]chain
	bytes  int64 // of records waiting
	items  int
	nextID uint64
	closed bool
}

type chain struct {
	name string // file name prefix
	kind kind   // what its lost records count as
	segs []*segment
	// head is the decoded record at segs[0].off, read once; headSize is
	// its size on disk.
	head     *item
	headSize int64
}

type segment struct {
	path string
	f    spoolFile
	end  int64 // bytes of whole records written; a failed write leaves junk after it, overwritten next
	off  int64 // records before it are consumed
	n    int   // records between off and end
}

// errLocked is a run directory's lock held by a live process.
var errLocked = errors.New("spool directory in use")

// staleRun is what earlier runs left in the spool directory.
type staleRun struct {
	health, events, corrupt uint64
	inUse                   int // run directories of processes still running
}

// openSpool makes this run's directory under opts.root, locks it, and
// discards what earlier runs left: their messages carry an older boot,
// which the hub rejects as a replay, so sending them would only cost the
// uplink. A directory another live process holds (two agents configured
// with one spool directory) is left alone.
func openSpool(opts spoolOptions) (*spool, staleRun, error) {
	if opts.segment <= 0 {
		opts.segment = min(max(opts.quota/16, minSegment), maxSegment)
	}
	if opts.create == nil {
		opts.create = func(path string) (spoolFile, error) {
			return os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		}
	}
	if err := os.MkdirAll(opts.root, 0o700); err != nil {
		return nil, staleRun{}, fmt.Errorf("uplink: spool: %w", err)
	}
	dir, err := os.MkdirTemp(opts.root, "run-*")
	if err != nil {
		return nil, staleRun{}, fmt.Errorf("uplink: spool: %w", err)
	}
	lock, err := lockFile(filepath.Join(dir, "lock"), true)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, staleRun{}, fmt.Errorf("uplink: spool: lock %s: %w", dir, err)
	}
	s := &spool{opts: opts, dir: dir, lock: lock}
	s.chains[chainHealth] = chain{name: "health", kind: kindHealth}
	s.chains[chainEvents] = chain{name: "events", kind: kindEvent}
	return s, cleanStale(opts.root, dir), nil
}

// staleGrace spares a run directory without a lock file yet: another
// process may have just made it.
const staleGrace = time.Minute

// cleanStale removes the run directories under root other than own whose
// lock nobody holds, counting what they held.
func cleanStale(root, own string) staleRun {
	var st staleRun
	entries, _ := os.ReadDir(root)
	for _, e := range entries {
		dir := filepath.Join(root, e.Name())
		if !e.IsDir() || !strings.HasPrefix(e.Name(), "run-") || dir == own {
			continue
		}
		lock, err := lockFile(filepath.Join(dir, "lock"), false)
		switch {
		case errors.Is(err, errLocked):
			st.inUse++
			continue
		case errors.Is(err, fs.ErrNotExist):
			if info, err := e.Info(); err != nil || time.Since(info.ModTime()) < staleGrace {
				continue
			}
		case err != nil:
			continue
		}
		scanRun(dir, &st)
		_ = os.RemoveAll(dir)
		if lock != nil {
			_ = lock.Close()
		}
	}
	return st
}

// scanRun counts the records in an earlier run's segments; a damaged
// record (a crash mid-write leaves a torn tail) ends its segment and
// counts as one corrupt record.
func scanRun(dir string, st *staleRun) {
	segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	for _, path := range segs {
		data, err := os.ReadFile(path)
		if err != nil {
			st.corrupt++
			continue
		}
		for len(data) > 0 {
			it, n, err := decodeRecord(data)
			if err != nil {
				st.corrupt++
				break
			}
			if it.kind == kindHealth {
				st.health++
			} else {
				st.events++
			}
			data = data[n:]
		}
	}
}

func (s *spool) chainOf(k kind) *chain {
	if k == kindHealth {
		return &s.chains[chainHealth]
	}
	return &s.chains[chainEvents]
}

// push appends it. When the quota is reached the oldest health report goes
// first, then it itself if it is a report and only events are left, then
// the oldest events: the queue's policy. An error means it was not stored
// (a disk error); the caller keeps it elsewhere.
func (s *spool) push(it item) error {
	if !it.kind.spooled() {
		return fmt.Errorf("uplink: spool: a %s is never spooled", it.kind)
	}
	size := recordSize(it)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("uplink: spool closed")
	}
	if size > s.opts.quota {
		s.opts.drop(it.kind, 1, "larger than the spool")
		return nil
	}
	for s.bytes+size > s.opts.quota {
		switch {
		case s.chains[chainHealth].waiting() > 0:
			s.dropHead(&s.chains[chainHealth])
		case it.kind == kindHealth:
			s.opts.drop(kindHealth, 1, "spool full")
			return nil
		case s.chains[chainEvents].waiting() > 0:
			s.dropHead(&s.chains[chainEvents])
		default:
			return fmt.Errorf("uplink: spool: %d bytes counted with no record waiting", s.bytes) // cannot happen
		}
	}
	ch := s.chainOf(it.kind)
	seg, err := s.tail(ch)
	if err != nil {
		s.opts.counters.errors.Add(1)
		return err
	}
	if _, err := seg.f.WriteAt(encodeRecord(nil, it), seg.end); err != nil {
		s.opts.counters.errors.Add(1)
		return fmt.Errorf("uplink: spool: write %s: %w", seg.path, err)
	}
	seg.end += size
	seg.n++
	s.bytes += size
	s.items++
	s.opts.counters.spooled.Add(1)
	return nil
}

// tail returns the segment to append to, starting a new one when the last
// is full.
func (s *spool) tail(ch *chain) (*segment, error) {
	if n := len(ch.segs); n > 0 && ch.segs[n-1].end < s.opts.segment {
		return ch.segs[n-1], nil
	}
	s.nextID++
	path := filepath.Join(s.dir, fmt.Sprintf("%s-%06d.seg", ch.name, s.nextID))
	f, err := s.opts.create(path)
	if err != nil {
		return nil, fmt.Errorf("uplink: spool: create segment: %w", err)
	}
	seg := &segment{path: path, f: f}
	ch.segs = append(ch.segs, seg)
	return seg, nil
}

func (ch *chain) waiting() int {
	n := 0
	for _, seg := range ch.segs {
		n += seg.n
	}
	return n
}

// dropHead drops the oldest record of ch to make room, counted by kind.
func (s *spool) dropHead(ch *chain) {
	if !s.loadHead(ch) {
		return // what was left turned out damaged, and is gone
	}
	s.opts.drop(ch.head.kind, 1, "spool full")
	s.popHead(ch)
}

// peek returns the oldest item waiting, by seq, without removing it.
func (s *spool) peek() (item, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var best *chain
	for i := range s.chains {
		ch := &s.chains[i]
		if !s.loadHead(ch) {
			continue
		}
		if best == nil || ch.head.parts[0].seq < best.head.parts[0].seq {
			best = ch
		}
	}
	if best == nil {
		return item{}, false
	}
	return *best.head, true
}

// remove removes it, which peek returned, unless the quota dropped it in
// the meantime.
func (s *spool) remove(it item) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := s.chainOf(it.kind)
	if ch.head != nil && ch.head.parts[0].seq == it.parts[0].seq {
		s.popHead(ch)
	}
}

// loadHead reads the oldest record of ch into ch.head; false when the
// chain is empty. A record that cannot be read or fails its checks loses
// the rest of its segment (a length cannot be trusted past it), counted
// as corrupt; the next segment carries on.
func (s *spool) loadHead(ch *chain) bool {
	for ch.head == nil {
		s.trim(ch)
		if len(ch.segs) == 0 || ch.segs[0].n == 0 {
			return false
		}
		seg := ch.segs[0]
		it, size, err := readRecord(seg)
		if err != nil {
			if !errors.Is(err, errCorrupt) {
				s.opts.counters.errors.Add(1)
			}
			s.discard(ch, seg)
			continue
		}
		ch.head, ch.headSize = &it, size
	}
	return true
}

// readRecord reads the record at seg.off.
func readRecord(seg *segment) (item, int64, error) {
	var h [recordHeader]byte
	if _, err := seg.f.ReadAt(h[:], seg.off); err != nil {
		return item{}, 0, fmt.Errorf("uplink: spool: read %s: %w", seg.path, err)
	}
	n, _, err := recordLen(h[:])
	if err != nil {
		return item{}, 0, err
	}
	if seg.off+recordHeader+int64(n) > seg.end {
		return item{}, 0, fmt.Errorf("%w: record runs past the end of %s", errCorrupt, seg.path)
	}
	buf := make([]byte, recordHeader+n)
	if _, err := seg.f.ReadAt(buf, seg.off); err != nil {
		return item{}, 0, fmt.Errorf("uplink: spool: read %s: %w", seg.path, err)
	}
	it, size, err := decodeRecord(buf)
	return it, int64(size), err
}

func (s *spool) popHead(ch *chain) {
	seg := ch.segs[0]
	seg.off += ch.headSize
	seg.n--
	s.bytes -= ch.headSize
	s.items--
	ch.head, ch.headSize = nil, 0
	s.trim(ch)
}

// discard gives up the rest of seg, the first segment of ch.
func (s *spool) discard(ch *chain, seg *segment) {
	lost := uint64(seg.n)
	s.opts.counters.corrupt.Add(lost)
	s.opts.drop(ch.kind, lost, "spool record damaged")
	s.bytes -= seg.end - seg.off
	s.items -= seg.n
	seg.off, seg.n = seg.end, 0
	s.closeSegment(seg)
	ch.segs = ch.segs[1:]
	ch.head, ch.headSize = nil, 0
}

// trim deletes consumed segments at the head of ch, except the last one
// while it still takes appends.
func (s *spool) trim(ch *chain) {
	for len(ch.segs) > 0 {
		seg := ch.segs[0]
		if seg.n > 0 || (len(ch.segs) == 1 && seg.end < s.opts.segment) {
			return
		}
		s.closeSegment(seg)
		ch.segs = ch.segs[1:]
	}
}

func (s *spool) closeSegment(seg *segment) {
	_ = seg.f.Close()
	_ = os.Remove(seg.path)
}

// size returns the items and bytes waiting.
func (s *spool) size() (items int, bytes int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.items, s.bytes
}

// close deletes this run's directory and returns how many items were
// still waiting.
func (s *spool) close() (left int, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, nil
	}
	s.closed = true
	for i := range s.chains {
		for _, seg := range s.chains[i].segs {
			_ = seg.f.Close()
		}
		s.chains[i].segs, s.chains[i].head = nil, nil
	}
	left, s.items, s.bytes = s.items, 0, 0
	err = os.RemoveAll(s.dir)
	_ = s.lock.Close()
	return left, err
}
