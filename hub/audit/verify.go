package audit

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
)

// Checkpoint is a head an auditor wrote down earlier (Head, or a Report's
// HeadSeq and HeadHash).
type Checkpoint struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
}

// Check reports what is wrong with a checkpoint someone typed in.
func (c Checkpoint) Check() error {
	if c.Seq == 0 {
		return errors.New("checkpoint seq must be at least 1")
	}
	if _, err := decodeHash(c.Hash); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	return nil
}

// Broken names the first record where verification failed.
type Broken struct {
	Seq uint64 `json:"seq"`
	// Kind is what broke, one of BrokenKinds; Reason says it in words.
	Kind   string `json:"kind"`
	Reason string `json:"reason"`
}

// What a Broken record's Kind may be.
const (
	BrokenUnreadable = "unreadable" // a column holds a value of the wrong type
	BrokenAnchor     = "anchor"     // the anchor retention leaves is not genuine
	BrokenGap        = "gap"        // records are missing from the middle
	BrokenHash       = "hash"       // a record or an earlier one was changed
	BrokenCheckpoint = "checkpoint" // the chain was rewritten past a written-down head
	BrokenTruncated  = "truncated"  // the newest records are missing
)

// BrokenKinds lists every Broken.Kind.
var BrokenKinds = []string{BrokenUnreadable, BrokenAnchor, BrokenGap, BrokenHash, BrokenCheckpoint, BrokenTruncated}

// Checkpoint results in a Report.
const (
	CheckpointMatched = "matched" // the chain passes through the checkpoint
	CheckpointPruned  = "pruned"  // retention removed it; nothing to compare
)

// Report is the outcome of a verification.
type Report struct {
	OK bool `json:"ok"`
	// Records is how many records were read.
	Records uint64 `json:"records"`
	// AnchorSeq is the last record retention removed (0: none); the
	// chain is verified from the record after it.
	AnchorSeq uint64 `json:"anchor_seq"`
	// HeadSeq and HeadHash are the newest record's: write them down to
	// detect a later truncation with VerifyHead.
	HeadSeq  uint64 `json:"head_seq"`
	HeadHash string `json:"head_hash"`
	// KeyFingerprint names the key the chain was checked with.
	KeyFingerprint string `json:"key_fingerprint"`
	// Checkpoint is what became of the checkpoint given to VerifyHead:
	// CheckpointMatched, CheckpointPruned, or empty when none was given or
	// it did not match (FirstBroken says how).
	Checkpoint  string  `json:"checkpoint,omitempty"`
	FirstBroken *Broken `json:"first_broken,omitempty"`
}

// Verify recomputes the whole chain from the anchor and reports the first
// record that breaks it. It streams the records, so it runs in constant
// memory however long the trail; it reads one snapshot, so appends and
// retention running meanwhile do not disturb it. The error is for failures
// to read, not for a broken chain.
func (l *Log) Verify(ctx context.Context) (Report, error) {
	return l.VerifyHead(ctx, Checkpoint{})
}

// VerifyHead is Verify that also checks the chain still passes through a
// head written down earlier, which catches the removal of the newest
// records. A zero Checkpoint checks nothing more.
func (l *Log) VerifyHead(ctx context.Context, cp Checkpoint) (Report, error) {
	if cp != (Checkpoint{}) {
		if err := cp.Check(); err != nil {
			return Report{}, fmt.Errorf("audit: verify: %w", err)
		}
	}
	tx, err := l.r.BeginTx(ctx, l.snapshot())
	if err != nil {
		return Report{}, fmt.Errorf("audit: verify: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // read-only
	v := verifier{c: newChain(l.key), cp: cp, rep: Report{KeyFingerprint: l.fp}}
	var mac string
	if err := tx.QueryRowContext(ctx, `SELECT seq, hash, mac FROM anchor`).Scan(&v.rep.AnchorSeq, &v.rep.HeadHash, &mac); err != nil {
		return Report{}, fmt.Errorf("audit: verify: read anchor: %w", err)
	}
	v.anchor(mac)
	rows, err := tx.QueryContext(ctx, `SELECT `+columns+` FROM records ORDER BY seq`)
	if err != nil {
		return Report{}, fmt.Errorf("audit: verify: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		r, err := scanRecord(rows)
		if err != nil {
			// A value of the wrong type (a tampered column) cannot be
			// chained; the record is where it breaks.
			v.broke(v.rep.HeadSeq+1, BrokenUnreadable, "unreadable record: "+err.Error())
			break
		}
		v.record(&r)
	}
	if err := rows.Err(); err != nil {
		return Report{}, fmt.Errorf("audit: verify: %w", err)
	}
	v.end()
	v.rep.OK = v.rep.FirstBroken == nil
	return v.rep, nil
}

// verifier walks the chain one record at a time.
type verifier struct {
	c    *chain
	cp   Checkpoint
	rep  Report
	prev []byte // the hash the next record chains to
}

func (v *verifier) broke(seq uint64, kind, reason string) {
	if v.rep.FirstBroken == nil {
		v.rep.FirstBroken = &Broken{Seq: seq, Kind: kind, Reason: reason}
	}
}

// anchor checks the anchor the walk starts from; rep.HeadHash holds its
// hash.
func (v *verifier) anchor(mac string) {
	a := v.rep.AnchorSeq
	v.rep.HeadSeq = a
	raw, err := decodeHash(v.rep.HeadHash)
	switch {
	case err != nil:
		v.broke(a, BrokenAnchor, "anchor mismatch: "+err.Error())
		raw = genesis
	case a == 0 && v.rep.HeadHash != genesisHex:
		v.broke(a, BrokenAnchor, "anchor mismatch: the anchor before the first record is not the genesis hash")
	case a > 0 && mac != v.c.anchorMAC(a, raw):
		v.broke(a, BrokenAnchor, "anchor mismatch: the anchor was not set by retention (its MAC does not match the key)")
	}
	v.prev = raw
	v.checkpoint(a, v.rep.HeadHash)
}

// record checks one record, in seq order.
func (v *verifier) record(r *Record) {
	v.rep.Records++
	want := v.rep.HeadSeq + 1
	switch {
	case r.Seq <= v.rep.AnchorSeq:
		// Skipped: the walk starts after the anchor.
		v.broke(r.Seq, BrokenAnchor, fmt.Sprintf("anchor mismatch: record %d is still here but the anchor says retention removed it", r.Seq))
		return
	case r.Seq > want:
		// The record after a gap chains to a missing hash; the gap is
		// what to report.
		v.broke(want, BrokenGap, gap(want, r.Seq-1))
	default:
		if hex.EncodeToString(v.c.sum(v.prev, r)) != r.Hash {
			v.broke(r.Seq, BrokenHash, "hash mismatch: the record or an earlier one was changed")
		}
	}
	// Chain on from the stored hash, so one changed record is reported
	// once rather than breaking everything after it.
	if raw, err := decodeHash(r.Hash); err == nil {
		v.prev = raw
	} else {
		v.prev = v.c.sum(v.prev, r)
	}
	v.rep.HeadSeq, v.rep.HeadHash = r.Seq, r.Hash
	v.checkpoint(r.Seq, r.Hash)
}

func gap(from, to uint64) string {
	if from == to {
		return fmt.Sprintf("sequence gap: record %d missing", from)
	}
	return fmt.Sprintf("sequence gap: records %d–%d missing", from, to)
}

// checkpoint compares the written-down head when the walk reaches its seq.
func (v *verifier) checkpoint(seq uint64, hash string) {
	switch {
	case v.cp.Seq == 0 || seq != v.cp.Seq:
	case hash == v.cp.Hash:
		v.rep.Checkpoint = CheckpointMatched
	default:
		v.broke(seq, BrokenCheckpoint, fmt.Sprintf("checkpoint mismatch: record %d's hash is not the one written down; the chain was rewritten from here", seq))
	}
}

// end reports a checkpoint the walk never reached.
func (v *verifier) end() {
	switch {
	case v.cp.Seq == 0 || v.rep.Checkpoint != "":
	case v.cp.Seq < v.rep.AnchorSeq:
		v.rep.Checkpoint = CheckpointPruned
	case v.cp.Seq > v.rep.HeadSeq:
		v.broke(v.rep.HeadSeq+1, BrokenTruncated, fmt.Sprintf("truncated: the newest records up to %d, the head written down, are missing; %s",
			v.cp.Seq, gap(v.rep.HeadSeq+1, v.cp.Seq)))
	}
}
