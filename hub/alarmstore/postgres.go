package alarmstore

import "github.com/citywatch/citywatch/hub/internal/schema"

// postgres is how the alarm store shares a cluster's PostgreSQL database:
// its migrations under an advisory lock of its own ("cwalarms"), its
// version in schema_version, and at most four connections a hub — one
// writer, the rest for reports and loads.
var postgres = schema.PostgresOptions{Lock: 0x6377_616c_6172_6d73, VersionTable: "schema_version", MaxConns: 4}
