package audit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// PruneAction is the action of the record Prune appends.
const PruneAction = "audit.prune"

// Prune deletes the records older than before, moves the anchor to the
// last one deleted and appends an audit.prune record saying how many went,
// all in one transaction. It deletes in seq order and stops at the first
// record not older than before, so the chain stays verifiable from the
// anchor: a record whose At is earlier than its predecessor's (a clock
// stepped back, another process's clock) waits for the records before it.
// Deleting nothing appends nothing.
func (l *Log) Prune(ctx context.Context, before time.Time) (int, error) {
	if before.Before(minTime) || before.After(maxTime) {
		return 0, fmt.Errorf("audit: prune: time %s is out of range", before.Format(time.RFC3339))
	}
	var (
		n    int
		last uint64
		rec  Record
	)
	err := l.write(ctx, func(tx *sql.Tx) error {
		var err error
		last, n, err = l.pruneTx(ctx, tx, before)
		if err != nil || n == 0 {
			return err
		}
		rec = Record{
			At: l.now(), Actor: "system", Action: PruneAction, Outcome: Success,
			Detail: fmt.Sprintf("retention deleted %d records up to seq %d, older than %s",
				n, last, before.UTC().Format(time.RFC3339)),
		}
		recs := []Record{rec}
		err = l.appendTx(ctx, tx, recs)
		rec = recs[0]
		return err
	})
	if err != nil {
		l.failures.With("prune").Inc()
		l.log.Error("audit retention failed", "before", before, "err", err)
		return 0, fmt.Errorf("audit: prune: %w", err)
	}
	if n > 0 {
		l.records.Inc()
		l.commits.Inc()
		l.log.Info("audit retention", "deleted", n, "anchor_seq", last, "record_seq", rec.Seq)
	}
	return n, nil
}

// pruneTx deletes the oldest records before the cut-off and moves the
// anchor, returning the new anchor's seq and how many were deleted.
func (l *Log) pruneTx(ctx context.Context, tx *sql.Tx, before time.Time) (last uint64, n int, err error) {
	var keep sql.NullInt64
	if err := tx.QueryRowContext(ctx, l.dialect.SQL(`SELECT MIN(seq) FROM records WHERE at >= ?`), before.UnixNano()).Scan(&keep); err != nil {
		return 0, 0, fmt.Errorf("find cut-off: %w", err)
	}
	q, args := `SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1`, []any(nil)
	if keep.Valid {
		q, args = l.dialect.SQL(`SELECT seq, hash FROM records WHERE seq < ? ORDER BY seq DESC LIMIT 1`), []any{keep.Int64}
	}
	var hash string
	switch err := tx.QueryRowContext(ctx, q, args...).Scan(&last, &hash); {
	case errors.Is(err, sql.ErrNoRows):
		return 0, 0, nil
	case err != nil:
		return 0, 0, fmt.Errorf("find last record to delete: %w", err)
	}
	raw, err := decodeHash(hash)
	if err != nil {
		return 0, 0, fmt.Errorf("record %d: %w", last, err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO prune_guard (id) VALUES (1)`); err != nil {
		return 0, 0, fmt.Errorf("open guard: %w", err)
	}
	res, err := tx.ExecContext(ctx, l.dialect.SQL(`DELETE FROM records WHERE seq <= ?`), int64(last))
	if err != nil {
		return 0, 0, fmt.Errorf("delete: %w", err)
	}
	deleted, err := res.RowsAffected()
	if err != nil {
		return 0, 0, fmt.Errorf("delete: %w", err)
	}
	if _, err := tx.ExecContext(ctx, l.dialect.SQL(`UPDATE anchor SET seq = ?, hash = ?, mac = ? WHERE id = 1`),
		int64(last), hash, newChain(l.key).anchorMAC(last, raw)); err != nil {
		return 0, 0, fmt.Errorf("move anchor: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM prune_guard`); err != nil {
		return 0, 0, fmt.Errorf("close guard: %w", err)
	}
	return last, int(deleted), nil
}

// pruneExpired applies the retention period; Prune counts and logs a
// failure, and the next day's run tries again.
func (l *Log) pruneExpired(ctx context.Context) {
	l.Prune(ctx, l.now().Add(-l.retention)) //nolint:errcheck // counted and logged by Prune
}
