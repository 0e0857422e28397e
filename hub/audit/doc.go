// Package audit is the hub's evidence of who did what: an append-only,
// hash-chained log of Records in SQLite (modernc.org/sqlite, WAL,
// synchronous=FULL, so a record is on disk when Append returns). Each
// record's Hash is hex(HMAC-SHA256(key, prev || canonical(record))), where
// prev is the raw hash of the record before it (32 zero bytes for the first)
// and canonical is a versioned, length-prefixed encoding of every other field
// with At in UTC nanoseconds; Seq runs from 1 without gaps. The key is 32
// random bytes in a file of its own (hex, mode 0600), created on first use;
// the database remembers the key's fingerprint and refuses any other key,
// since a chain continued under a wrong key could never be verified.
// Triggers refuse UPDATE, out-of-sequence INSERT and DELETE of records;
// only Prune (retention) deletes, and it deletes the oldest records in
// seq order, leaving an anchor (the last deleted seq and hash, with a MAC
// under the key) from which Verify starts, plus an audit.prune record.
// Verify recomputes the chain and names the first broken record. What it
// detects: any change, insertion or deletion of records or of the anchor by
// someone without the key, even one who dropped the triggers. What it
// cannot: a rewrite of the whole chain by someone holding the key (keep it
// readable by the hub's user only and a copy offline), and the removal of
// the newest records, which leaves a shorter chain that is still intact — to
// catch that, an auditor writes down the head (Head, or the head_seq and
// head_hash of a report) and later passes it to VerifyHead. Backup: Export
// as JSONL keeps every field with seq and hash, so together with the key
// (identified by KeyFingerprint) the chain of a full export can be
// recomputed anywhere; CSV is for reading, its cells escaped against
// spreadsheet formulas. Appends inside the hub are group-committed by Run,
// so concurrent callers share one fsync; other processes (the command line)
// append to the same file safely, because the head is read inside the write
// transaction.
package audit
