package audit

// migrations[i] brings the schema from version i to i+1. Append, never
// edit: a database records the versions it has run.
var migrations = []string{
	`CREATE TABLE records (
		seq     INTEGER PRIMARY KEY,
		at      INTEGER NOT NULL, -- Unix nanoseconds
		actor   TEXT NOT NULL,
		role    TEXT NOT NULL,
		session TEXT NOT NULL,
		remote  TEXT NOT NULL,
		action  TEXT NOT NULL,
		object  TEXT NOT NULL,
		outcome TEXT NOT NULL,
		detail  TEXT NOT NULL,
		hash    TEXT NOT NULL
	);
	-- Each index ends in seq (the rowid), so a filtered page walks it
	-- newest first without sorting.
	CREATE INDEX records_at ON records (at);
	CREATE INDEX records_actor ON records (actor);
	CREATE INDEX records_action ON records (action);
	CREATE INDEX records_object ON records (object);

	-- The last record retention deleted: verification starts after it.
	CREATE TABLE anchor (
		id   INTEGER PRIMARY KEY CHECK (id = 1),
		seq  INTEGER NOT NULL,
		hash TEXT NOT NULL,
		mac  TEXT NOT NULL -- empty for the genesis anchor, which needs none
	);
	INSERT INTO anchor (id, seq, hash, mac) VALUES (1, 0, '` + genesisHex + `', '');

	-- Prune inserts the row, deletes and removes it in one transaction;
	-- outside that transaction the table is empty and deletes are refused.
	CREATE TABLE prune_guard (id INTEGER PRIMARY KEY CHECK (id = 1));

	CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);

	CREATE TRIGGER records_no_update BEFORE UPDATE ON records
	BEGIN SELECT RAISE(ABORT, 'audit records cannot be changed'); END;

	CREATE TRIGGER records_no_delete BEFORE DELETE ON records
	WHEN NOT EXISTS (SELECT 1 FROM prune_guard)
	BEGIN SELECT RAISE(ABORT, 'audit records can only be deleted by retention'); END;

	-- Appending in sequence also rules out INSERT OR REPLACE, which would
	-- delete a record without firing the delete trigger.
	CREATE TRIGGER records_in_sequence BEFORE INSERT ON records
	WHEN NEW.seq IS NOT COALESCE((SELECT MAX(seq) FROM records), (SELECT seq FROM anchor)) + 1
	BEGIN SELECT RAISE(ABORT, 'audit records are appended in sequence'); END;

	CREATE TRIGGER anchor_no_update BEFORE UPDATE ON anchor
	WHEN NOT EXISTS (SELECT 1 FROM prune_guard)
	BEGIN SELECT RAISE(ABORT, 'the audit anchor is moved by retention only'); END;

	CREATE TRIGGER anchor_no_delete BEFORE DELETE ON anchor
	BEGIN SELECT RAISE(ABORT, 'the audit anchor cannot be deleted'); END;

	CREATE TRIGGER meta_no_update BEFORE UPDATE ON meta
	BEGIN SELECT RAISE(ABORT, 'audit metadata cannot be changed'); END;

	CREATE TRIGGER meta_no_delete BEFORE DELETE ON meta
	BEGIN SELECT RAISE(ABORT, 'audit metadata cannot be deleted'); END;`,
}
