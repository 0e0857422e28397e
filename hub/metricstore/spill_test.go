package metricstore

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// payload is a recognisable batch of n lines.
func payload(i, n int) []byte {
	var b bytes.Buffer
	for j := range n {
		fmt.Fprintf(&b, "m,batch=%d v=%di %d\n", i, j, 1000+j)
	}
	return b.Bytes()
}

func segmentFiles(t testing.TB, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*"+spillExt))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// drainSpill reads every record, acking each, and returns their payloads.
func drainSpill(t *testing.T, s *spill) []string {
	t.Helper()
	var got []string
	for {
		rec, lost, err := s.next()
		if err != nil || lost != 0 {
			t.Fatalf("next: %v (lost %d)", err, lost)
		}
		if rec == nil {
			return got
		}
		got = append(got, string(rec.buf))
		s.ack(rec)
	}
}

// Records come back in the order written, across segments, and the spill
// gives its space back as they are delivered: no file is left.
func TestSpillIsFIFOAndEmptiesItsFiles(t *testing.T) {
	dir := t.TempDir()
	s, err := openSpill(dir, 1<<20) // segments of 128 KiB
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	var want []string
	for i := range 40 {
		p := payload(i, 300) // ~7 KiB
		want = append(want, string(p))
		if err := s.append(p, 300); err != nil {
			t.Fatal(err)
		}
	}
	st := s.stats()
	if st.Points != 40*300 || st.Segments < 2 || st.Bytes <= 0 || len(segmentFiles(t, dir)) != st.Segments {
		t.Fatalf("stats %+v, files %v", st, segmentFiles(t, dir))
	}
	got := drainSpill(t, s)
	if strings.Join(got, "") != strings.Join(want, "") {
		t.Errorf("replayed %d records, not the %d written in order", len(got), len(want))
	}
	if st := s.stats(); st != (spillStats{Max: 1 << 20}) || len(segmentFiles(t, dir)) != 0 {
		t.Errorf("after delivery: stats %+v, files %v", st, segmentFiles(t, dir))
	}
	// It keeps working once empty.
	if err := s.append(payload(99, 1), 1); err != nil {
		t.Fatal(err)
	}
	if got := drainSpill(t, s); len(got) != 1 {
		t.Errorf("after refilling: %d records", len(got))
	}
}

// The spill never grows past its size: the batch that does not fit is
// refused with errSpillFull, and space comes back as records are delivered.
func TestSpillIsBounded(t *testing.T) {
	dir := t.TempDir()
	const limit = 200 << 10
	s, err := openSpill(dir, limit)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	p := payload(0, 400) // ~9 KiB
	n := 0
	for ; ; n++ {
		err := s.append(p, 400)
		if errors.Is(err, errSpillFull) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	var onDisk int64
	for _, f := range segmentFiles(t, dir) {
		fi, _ := os.Stat(f)
		onDisk += fi.Size()
	}
	if st := s.stats(); n == 0 || st.Bytes > limit || onDisk != st.Bytes || st.Points != n*400 {
		t.Fatalf("%d batches taken; stats %+v, %d bytes on disk", n, st, onDisk)
	}
	// Deliver the first segment's records: room again.
	first := s.segs[0]
	for range first.records {
		rec, _, _ := s.next()
		s.ack(rec)
	}
	if err := s.append(p, 400); err != nil {
		t.Errorf("after freeing a segment: %v", err)
	}
}

// What was not delivered survives closing: a new spill on the directory
// hands out the same records, oldest first, including a segment that was
// partly delivered (again from its start: at least once). Records given
// back with nack come out first.
func TestSpillSurvivesReopening(t *testing.T) {
	dir := t.TempDir()
	s, err := openSpill(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := range 30 {
		p := payload(i, 300)
		want = append(want, string(p))
		if err := s.append(p, 300); err != nil {
			t.Fatal(err)
		}
	}
	r1, _, _ := s.next()
	r2, _, _ := s.next()
	s.ack(r1)
	s.nack(r2)
	if again, _, _ := s.next(); again != r2 {
		t.Fatalf("after nack, next gave %q, want the record given back", again.buf[:20])
	}
	if err := s.close(); err != nil {
		t.Fatal(err)
	}

	s, err = openSpill(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	if st := s.stats(); st.Points != 30*300 {
		t.Errorf("reopened with %d points, want %d (the first segment was not all delivered)", st.Points, 30*300)
	}
	if got := drainSpill(t, s); strings.Join(got, "") != strings.Join(want, "") {
		t.Errorf("reopened spill gave %d records, want all %d in order", len(got), len(want))
	}
	// New appends after reopening go to new segments after the old ones.
	if err := s.append(payload(100, 1), 1); err != nil {
		t.Fatal(err)
	}
	if got := drainSpill(t, s); len(got) != 1 || !strings.Contains(got[0], "batch=100") {
		t.Errorf("got %q", got)
	}
}

// A crash in the middle of an append leaves a torn record: it is cut off
// when the spill opens, and every whole record before it is kept.
func TestSpillCutsATornTail(t *testing.T) {
	dir := t.TempDir()
	s, err := openSpill(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := s.append(payload(i, 10), 10); err != nil {
			t.Fatal(err)
		}
	}
	s.close()
	files := segmentFiles(t, dir)
	if len(files) != 1 {
		t.Fatalf("files %v", files)
	}
	whole, _ := os.Stat(files[0])
	// Half of a fourth record.
	f, _ := os.OpenFile(files[0], os.O_APPEND|os.O_WRONLY, 0)
	f.Write([]byte{200, 0, 0, 0, 10, 0, 0, 0, 1, 2, 3, 4, 'm', ','})
	f.Close()
	// An empty segment, as a crash right after creating one leaves.
	os.WriteFile(filepath.Join(dir, fmt.Sprintf("%020d%s", 7, spillExt)), nil, 0o600)

	s, err = openSpill(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	if fi, _ := os.Stat(files[0]); fi.Size() != whole.Size() {
		t.Errorf("segment is %d bytes, want the %d of its whole records", fi.Size(), whole.Size())
	}
	if got := segmentFiles(t, dir); len(got) != 1 {
		t.Errorf("the empty segment was not removed: %v", got)
	}
	got := drainSpill(t, s)
	if len(got) != 3 || got[2] != string(payload(2, 10)) {
		t.Errorf("got %d records: %q", len(got), got)
	}
	// Appends continue after the highest sequence number seen.
	if err := s.append(payload(3, 1), 1); err != nil {
		t.Fatal(err)
	}
	if got := segmentFiles(t, dir); len(got) != 1 || filepath.Base(got[0]) != fmt.Sprintf("%020d%s", 8, spillExt) {
		t.Errorf("new segment %v, want number 8", got)
	}
}

// FuzzSpillOpen opens a segment file of arbitrary contents, as a disk
// fault could leave: the spill opens, hands out only records whose
// checksum holds, and accounts for every point it hands out.
func FuzzSpillOpen(f *testing.F) {
	dir := f.TempDir()
	s, err := openSpill(dir, 1<<20)
	if err != nil {
		f.Fatal(err)
	}
	s.append(payload(0, 3), 3)
	s.append(payload(1, 2), 2)
	s.close()
	valid, err := os.ReadFile(segmentFiles(f, dir)[0])
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid)
	f.Add(valid[:len(valid)-3])
	f.Add([]byte(spillMagic))
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%020d%s", 1, spillExt)), data, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := openSpill(dir, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		defer s.close()
		points := s.stats().Points
		handed := 0
		for {
			rec, lost, err := s.next()
			if err != nil || lost != 0 {
				t.Fatalf("next after a clean open: %v, lost %d", err, lost)
			}
			if rec == nil {
				break
			}
			if !bytes.Contains(data, rec.buf) {
				t.Fatal("a record that is not in the file")
			}
			handed += rec.n
			s.ack(rec)
		}
		if handed != points || s.stats().Points != 0 || len(segmentFiles(t, dir)) != 0 {
			t.Errorf("handed out %d points of %d; left %+v", handed, points, s.stats())
		}
	})
}
