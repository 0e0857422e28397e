// Package history is the durable record of every device status transition
// and the exact, time-weighted reports computed from it: availability
// (在线率, 完好率, outages, MTTR) by district, site, kind or vendor, a daily
// series per district, and the status timelines the coverage ledger lays
// over the grid.
//
// One SQLite file (WAL) holds the transitions; one writer connection
// writes them in batches from a bounded queue that never blocks the
// fleet, and readers query snapshots. Each calendar day of the report
// time zone, once over, is rolled up into one packed record (record.go):
// every device's state at the day's start and its changes, so a month's
// report decodes 30 records instead of millions of rows. Roll-ups are a
// cache: a late transition reopens its day, and a report reads whatever
// is not rolled up from the transitions themselves. The hub records that
// it is alive every 30 s; at start every device goes unknown from the
// last sign of life, so time the hub was down is never counted as up or
// down.
package history
