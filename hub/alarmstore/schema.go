package alarmstore

import (
	"database/sql"
	"encoding/json"
	"strconv"
	"strings"

	"github.com/citywatch/citywatch/hub/alarm"
)

// migrations[i] brings the schema from version i to i+1. Append, never
// edit: a database records the versions it has run. They are SQLite's;
// PostgreSQL runs them with schema.OpenPostgres's column types.
var migrations = []string{
	`CREATE TABLE alarms (
		id            TEXT PRIMARY KEY,
		key           TEXT NOT NULL,
		source        TEXT NOT NULL,
		type          TEXT NOT NULL,
		device        TEXT NOT NULL,
		agent         TEXT NOT NULL,
		site          TEXT NOT NULL,
		district      TEXT NOT NULL,
		severity      INTEGER NOT NULL,
		criticality   INTEGER NOT NULL,
		priority      INTEGER NOT NULL,
		state         TEXT NOT NULL,
		count         INTEGER NOT NULL,
		first_at      INTEGER NOT NULL,
		last_at       INTEGER NOT NULL,
		cleared_at    INTEGER NOT NULL,
		acked_by      TEXT NOT NULL,
		acked_at      INTEGER NOT NULL,
		assigned_to   TEXT NOT NULL,
		shelved_until INTEGER NOT NULL,
		escalations   INTEGER NOT NULL,
		flapping      INTEGER NOT NULL,
		detail        TEXT NOT NULL
	);
	CREATE INDEX alarms_key ON alarms (key);
	CREATE INDEX alarms_state ON alarms (state, last_at);
	CREATE TABLE transitions (
		seq        INTEGER PRIMARY KEY, -- commit order, which is the engine's order
		alarm_id   TEXT NOT NULL,
		at         INTEGER NOT NULL,
		who        TEXT NOT NULL,
		action     TEXT NOT NULL,
		from_state TEXT NOT NULL,
		to_state   TEXT NOT NULL,
		note       TEXT NOT NULL
	);
	CREATE INDEX transitions_alarm ON transitions (alarm_id, seq);
	CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);`,
	// Shift reports find a window's transitions by time.
	`CREATE INDEX transitions_at ON transitions (at);`,
	// args: Alarm.Args as a JSON object ('' for none).
	`ALTER TABLE alarms ADD COLUMN args TEXT NOT NULL DEFAULT '';`,
	// partition: the cluster partition the alarm belongs to (0 on a single
	// hub); a hub taking partitions over loads their open alarms.
	`ALTER TABLE alarms ADD COLUMN partition INTEGER NOT NULL DEFAULT 0;
	CREATE INDEX alarms_partition ON alarms (partition, state);`,
	// id_seqs replaces meta's one next_id: each hub of a cluster issues ids
	// of its own prefix, each with its own sequence. Every id so far was
	// "A" and digits.
	`CREATE TABLE id_seqs (prefix TEXT PRIMARY KEY, next_seq INTEGER NOT NULL);
	INSERT INTO id_seqs (prefix, next_seq) SELECT 'A', value FROM meta WHERE name = 'next_id';
	DROP TABLE meta;`,
}

// The statements below are written once, in SQLite's syntax and the
// subset PostgreSQL shares; schema.Dialect.SQL rewrites their placeholders.

// whereOpen selects the alarms that are not closed (alarm.State.Closed).
const whereOpen = `state <> 'cleared_ack'`

const alarmColumns = `id, key, source, type, device, agent, site, district, severity, criticality, priority, state,
	count, first_at, last_at, cleared_at, acked_by, acked_at, assigned_to, shelved_until, escalations, flapping, detail, args`

const upsertAlarm = `INSERT INTO alarms (` + alarmColumns + `, partition)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
	ON CONFLICT (id) DO UPDATE SET
	key = excluded.key, source = excluded.source, type = excluded.type, device = excluded.device,
	agent = excluded.agent, site = excluded.site, district = excluded.district, severity = excluded.severity,
	criticality = excluded.criticality, priority = excluded.priority, state = excluded.state,
	count = excluded.count, first_at = excluded.first_at, last_at = excluded.last_at,
	cleared_at = excluded.cleared_at, acked_by = excluded.acked_by, acked_at = excluded.acked_at,
	assigned_to = excluded.assigned_to, shelved_until = excluded.shelved_until,
	escalations = excluded.escalations, flapping = excluded.flapping, detail = excluded.detail, args = excluded.args,
	partition = excluded.partition`

const insertTransition = `INSERT INTO transitions (alarm_id, at, who, action, from_state, to_state, note)
	VALUES (?, ?, ?, ?, ?, ?, ?)`

// raiseNextSeq only ever raises a prefix's sequence. The WHERE clause
// rather than a two-argument maximum, which SQLite spells MAX and
// PostgreSQL GREATEST, keeps one statement for both.
const raiseNextSeq = `INSERT INTO id_seqs (prefix, next_seq) VALUES (?, ?)
	ON CONFLICT (prefix) DO UPDATE SET next_seq = excluded.next_seq WHERE excluded.next_seq > id_seqs.next_seq`

const selectNextSeq = `SELECT next_seq FROM id_seqs WHERE prefix = ?`

// The id subqueries below choose the alarms a load returns; alarmsIn and
// transitionsIn read those alarms and their trails.
const (
	// loadedIDs are what Load returns: open alarms, and the ?1 most
	// recently changed closed ones.
	loadedIDs = `SELECT id FROM alarms WHERE ` + whereOpen + `
	UNION ALL SELECT id FROM (SELECT id FROM alarms WHERE state = 'cleared_ack' ORDER BY last_at DESC LIMIT ?1) AS recent`
	openIDs = `SELECT id FROM alarms WHERE ` + whereOpen
	oneID   = `SELECT id FROM alarms WHERE id = ?1`
)

// partitionIDs are the open alarms of n partitions, ?1 to ?n.
func partitionIDs(n int) string {
	ps := make([]string, n)
	for i := range ps {
		ps[i] = "?" + strconv.Itoa(i+1)
	}
	return openIDs + ` AND partition IN (` + strings.Join(ps, ", ") + `)`
}

func alarmsIn(ids string) string {
	return `SELECT ` + alarmColumns + ` FROM alarms WHERE id IN (` + ids + `)`
}

// transitionsIn orders by seq: commit order, which is the engine's. On
// PostgreSQL seq is numbered at insert rather than commit, which is the
// same for one alarm: one hub at a time writes it, batch after batch.
func transitionsIn(ids string) string {
	return `SELECT alarm_id, at, who, action, from_state, to_state, note FROM transitions
	WHERE alarm_id IN (` + ids + `) ORDER BY seq`
}

func alarmArgs(a alarm.Alarm, partition int) []any {
	return []any{
		a.ID, a.Key, string(a.Source), a.Type, a.Device, a.Agent, a.Site, a.District, int(a.Severity), a.Criticality,
		a.Priority, string(a.State), a.Count, ns(a.FirstAt), ns(a.LastAt), ns(a.ClearedAt), a.AckedBy, ns(a.AckedAt),
		a.AssignedTo, ns(a.ShelvedUntil), a.Escalations, flag(a.Flapping), a.Detail, argsText(a.Args), partition,
	}
}

func scanAlarm(rows *sql.Rows) (alarm.Alarm, error) {
	var (
		a                                        alarm.Alarm
		source, state                            string
		severity                                 int
		first, last, cleared, acked, shelvedTill int64
		args                                     string
	)
	err := rows.Scan(&a.ID, &a.Key, &source, &a.Type, &a.Device, &a.Agent, &a.Site, &a.District, &severity,
		&a.Criticality, &a.Priority, &state, &a.Count, &first, &last, &cleared, &a.AckedBy, &acked,
		&a.AssignedTo, &shelvedTill, &a.Escalations, &a.Flapping, &a.Detail, &args)
	if err == nil && args != "" {
		err = json.Unmarshal([]byte(args), &a.Args)
	}
	a.Source, a.State, a.Severity = alarm.Source(source), alarm.State(state), alarm.Severity(severity)
	a.FirstAt, a.LastAt, a.ClearedAt, a.AckedAt, a.ShelvedUntil = tm(first), tm(last), tm(cleared), tm(acked), tm(shelvedTill)
	return a, err
}

// argsText stores Alarm.Args as a JSON object, ” for none.
func argsText(m map[string]string) string {
	if len(m) == 0 {
		return ""
	}
	b, _ := json.Marshal(m) // a map of strings always marshals
	return string(b)
}

// flag stores a bool as 0 or 1: what SQLite made of one, and what a
// PostgreSQL BIGINT column takes (it does not cast a boolean).
func flag(b bool) int {
	if b {
		return 1
	}
	return 0
}
