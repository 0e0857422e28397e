package history

// migrations build the history database; append, never edit (see
// hub/internal/schema).
//
// transitions is the record every report is computed from: one row per
// stored change of a device's state, at Unix nanoseconds, with the status
// as a code (0 removed from the fleet, 1 online, 2 degraded, 3 offline,
// 4 unreachable, 5 unknown) and the place (agent, district, site, kind,
// vendor) the device had from then on. days holds one record per closed
// calendar day of the report location: every device's state at the day's
// start and its changes within it, packed (record.go), so a report over
// closed days reads 30 blobs instead of millions of rows. days can always
// be rebuilt from transitions.
var migrations = []string{
	`CREATE TABLE meta (name TEXT PRIMARY KEY, value ANY NOT NULL) STRICT;
	CREATE TABLE devices (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE) STRICT;
	CREATE TABLE places (
		id INTEGER PRIMARY KEY,
		agent TEXT NOT NULL, district TEXT NOT NULL, site TEXT NOT NULL, kind TEXT NOT NULL, vendor TEXT NOT NULL,
		UNIQUE (agent, district, site, kind, vendor)
	) STRICT;
	CREATE TABLE transitions (
		device INTEGER NOT NULL REFERENCES devices (id),
		at INTEGER NOT NULL,
		status INTEGER NOT NULL,
		place INTEGER NOT NULL REFERENCES places (id),
		simulated INTEGER NOT NULL,
		cause TEXT NOT NULL,
		reason TEXT NOT NULL
	) STRICT;
	CREATE INDEX transitions_at ON transitions (at);
	CREATE TABLE days (
		day INTEGER PRIMARY KEY,
		start_ns INTEGER NOT NULL,
		end_ns INTEGER NOT NULL,
		record BLOB NOT NULL
	) STRICT;`,
	// assets: a known device's serial or firmware changing (a unit
	// replaced or upgraded), from its agent's inventory.
	`CREATE TABLE assets (
		device TEXT NOT NULL,
		at INTEGER NOT NULL,
		field TEXT NOT NULL,
		old TEXT NOT NULL,
		new TEXT NOT NULL
	) STRICT;
	CREATE INDEX assets_device ON assets (device, at);`,
}
