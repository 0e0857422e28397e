package alarmstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/citywatch/citywatch/hub/alarm"
)

// defaultPrefix is the id prefix of a single hub's engine (alarm's
// idPrefix), whose sequence Load returns.
const defaultPrefix = "A"

// ErrNotFound is the error of an alarm id the database does not hold.
var ErrNotFound = errors.New("alarmstore: no such alarm")

// Load returns the alarms to restore: every open one and the closed most
// recent closed ones, with their trails, and the sequence number of the
// next alarm id of prefix "A". Closed alarms beyond that stay in the
// database as history.
func (s *Store) Load(closed int) (alarms []alarm.Alarm, trails map[string][]alarm.Transition, next uint64, err error) {
	ctx := context.Background()
	err = s.snapshot(ctx, func(tx *sql.Tx) error {
		var err error
		if alarms, trails, err = s.loadWithTrails(ctx, tx, loadedIDs, closed); err != nil {
			return err
		}
		next, err = s.nextSeq(ctx, tx, defaultPrefix)
		return err
	})
	if err != nil {
		return nil, nil, 0, err
	}
	return alarms, trails, next, nil
}

// LoadOpen returns every open alarm of every partition, ordered by id, without
// trails: what a hub shows of the alarms it does not own.
func (s *Store) LoadOpen(ctx context.Context) ([]alarm.Alarm, error) {
	return s.loadAlarms(ctx, s.rdb, openIDs)
}

// LoadPartitions returns the open alarms of partitions parts, ordered by id, and
// their whole trails in order: what a hub taking the partitions over
// restores into its engine. The two are read from one snapshot, so a
// trail matches its alarm while other hubs write.
func (s *Store) LoadPartitions(ctx context.Context, parts []int) (alarms []alarm.Alarm, trails map[string][]alarm.Transition, err error) {
	if len(parts) == 0 {
		return nil, map[string][]alarm.Transition{}, nil
	}
	args := make([]any, len(parts))
	for i, p := range parts {
		args[i] = p
	}
	err = s.snapshot(ctx, func(tx *sql.Tx) error {
		var err error
		alarms, trails, err = s.loadWithTrails(ctx, tx, partitionIDs(len(parts)), args...)
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	return alarms, trails, nil
}

// Alarm returns one alarm, open or closed, and its trail. An id the
// database does not hold is an error wrapping ErrNotFound.
func (s *Store) Alarm(ctx context.Context, id string) (alarm.Alarm, []alarm.Transition, error) {
	var (
		alarms []alarm.Alarm
		trails map[string][]alarm.Transition
	)
	err := s.snapshot(ctx, func(tx *sql.Tx) error {
		var err error
		alarms, trails, err = s.loadWithTrails(ctx, tx, oneID, id)
		return err
	})
	switch {
	case err != nil:
		return alarm.Alarm{}, nil, err
	case len(alarms) == 0:
		return alarm.Alarm{}, nil, fmt.Errorf("alarmstore: alarm %s: %w", id, ErrNotFound)
	}
	return alarms[0], trails[id], nil
}

// NextID returns the sequence number the next alarm id of prefix should
// carry: one more than the highest written with it, by whichever hub, or
// 0 when none was. prefix is an id up to its trailing digits, e.g. "A" or
// "Ahub-a.".
func (s *Store) NextID(ctx context.Context, prefix string) (uint64, error) {
	return s.nextSeq(ctx, s.rdb, prefix)
}

// splitID parses an alarm id into its prefix, everything up to the last
// non-digit, and the sequence number of its trailing digits: "A17" → "A",
// 17; "Ahub-a.17" → "Ahub-a.", 17. A prefix must therefore end in a
// non-digit. It reports false for an id without either part, or whose
// number a BIGINT does not hold (no engine issues one).
func splitID(id string) (prefix string, seq uint64, ok bool) {
	i := len(id)
	for i > 0 && id[i-1] >= '0' && id[i-1] <= '9' {
		i--
	}
	if i == 0 || i == len(id) {
		return "", 0, false
	}
	n, err := strconv.ParseUint(id[i:], 10, 64)
	if err != nil || n >= math.MaxInt64 {
		return "", 0, false
	}
	return id[:i], n, true
}

// querier is a database or a transaction to read from.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// snapshot runs f in a read-only transaction on the readers, so that its
// queries see one state of the database while batches are committed
// (SQLite's deferred transaction in WAL mode is a snapshot as well).
func (s *Store) snapshot(ctx context.Context, f func(tx *sql.Tx) error) error {
	tx, err := s.rdb.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true})
	if err != nil {
		return fmt.Errorf("alarmstore: begin read: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // read only: nothing to keep
	return f(tx)
}

// loadWithTrails reads the alarms whose ids the subquery ids selects, and
// their trails.
func (s *Store) loadWithTrails(ctx context.Context, q querier, ids string, args ...any) ([]alarm.Alarm, map[string][]alarm.Transition, error) {
	alarms, err := s.loadAlarms(ctx, q, ids, args...)
	if err != nil {
		return nil, nil, err
	}
	trails := make(map[string][]alarm.Transition, len(alarms))
	err = s.each(ctx, q, transitionsIn(ids), args, func(rows *sql.Rows) error {
		var (
			id, who, act, from, to, note string
			at                           int64
		)
		if err := rows.Scan(&id, &at, &who, &act, &from, &to, &note); err != nil {
			return err
		}
		trails[id] = append(trails[id], alarm.Transition{
			At: tm(at), Who: who, Action: alarm.Action(act), From: alarm.State(from), To: alarm.State(to), Note: note,
		})
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("alarmstore: load transitions: %w", err)
	}
	return alarms, trails, nil
}

// loadAlarms reads the alarms whose ids the subquery ids selects.
func (s *Store) loadAlarms(ctx context.Context, q querier, ids string, args ...any) ([]alarm.Alarm, error) {
	var alarms []alarm.Alarm
	err := s.each(ctx, q, alarmsIn(ids), args, func(rows *sql.Rows) error {
		a, err := scanAlarm(rows)
		alarms = append(alarms, a)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("alarmstore: load alarms: %w", err)
	}
	// Sorted here, not by ORDER BY, whose order follows a PostgreSQL
	// database's collation: the same on both engines.
	slices.SortFunc(alarms, func(a, b alarm.Alarm) int { return strings.Compare(a.ID, b.ID) })
	return alarms, nil
}

func (s *Store) nextSeq(ctx context.Context, q querier, prefix string) (uint64, error) {
	var n int64
	err := s.each(ctx, q, selectNextSeq, []any{prefix}, func(rows *sql.Rows) error { return rows.Scan(&n) })
	if err != nil {
		return 0, fmt.Errorf("alarmstore: next id of %s: %w", prefix, err)
	}
	return uint64(n), nil
}

// each runs query, in the store's dialect, and calls scan on every row it
// returns until scan fails.
func (s *Store) each(ctx context.Context, q querier, query string, args []any, scan func(*sql.Rows) error) error {
	rows, err := q.QueryContext(ctx, s.dialect.SQL(query), args...)
	if err != nil {
		return err
	}
	for rows.Next() {
		if err := scan(rows); err != nil {
			return errors.Join(err, rows.Close())
		}
	}
	return errors.Join(rows.Err(), rows.Close())
}
