package audit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/citywatch/citywatch/hub/internal/schema"
)

// In a cluster the hubs share one chain in PostgreSQL: every hub appends
// to it under one advisory lock (the head is read after the lock is
// taken), with the same key (the database refuses another, as a file
// does). Its tables live in a schema of their own, so that their names
// (records, meta…) do not meet the other stores' in the shared database.
const (
	pgSchema = "citywatch_audit"
	// pgLock serialises appends and retention across hubs ("cwaudit").
	pgLock = 0x63_7761_7564_6974
)

var pgOptions = schema.PostgresOptions{Lock: pgLock + 1, VersionTable: "audit_schema_version", MaxConns: readConns}

// pgMigrations are migrations in PostgreSQL's own words: its triggers are
// functions. The same guarantees as SQLite's: records are never changed,
// deleted only by retention, appended in sequence; the anchor moves only
// with retention; the metadata never changes.
var pgMigrations = []string{
	`CREATE TABLE records (
		seq     BIGINT PRIMARY KEY,
		at      BIGINT NOT NULL,
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
	CREATE INDEX records_at ON records (at, seq);
	CREATE INDEX records_actor ON records (actor, seq);
	CREATE INDEX records_action ON records (action, seq);
	CREATE INDEX records_object ON records (object, seq);
	CREATE TABLE anchor (
		id   BIGINT PRIMARY KEY CHECK (id = 1),
		seq  BIGINT NOT NULL,
		hash TEXT NOT NULL,
		mac  TEXT NOT NULL
	);
	INSERT INTO anchor (id, seq, hash, mac) VALUES (1, 0, '` + genesisHex + `', '');
	CREATE TABLE prune_guard (id BIGINT PRIMARY KEY CHECK (id = 1));
	CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);

	CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN RAISE EXCEPTION '%', TG_ARGV[0]; END $$;
	CREATE FUNCTION retention_only() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		IF NOT EXISTS (SELECT 1 FROM prune_guard) THEN RAISE EXCEPTION '%', TG_ARGV[0]; END IF;
		IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
		RETURN NEW;
	END $$;
	CREATE FUNCTION in_sequence() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		IF NEW.seq IS DISTINCT FROM COALESCE((SELECT MAX(seq) FROM records), (SELECT seq FROM anchor)) + 1 THEN
			RAISE EXCEPTION 'audit records are appended in sequence';
		END IF;
		RETURN NEW;
	END $$;
	CREATE TRIGGER records_no_update BEFORE UPDATE ON records FOR EACH ROW EXECUTE FUNCTION refuse('audit records cannot be changed');
	CREATE TRIGGER records_no_delete BEFORE DELETE ON records FOR EACH ROW EXECUTE FUNCTION retention_only('audit records can only be deleted by retention');
	CREATE TRIGGER records_no_truncate BEFORE TRUNCATE ON records FOR EACH STATEMENT EXECUTE FUNCTION refuse('audit records can only be deleted by retention');
	CREATE TRIGGER records_in_sequence BEFORE INSERT ON records FOR EACH ROW EXECUTE FUNCTION in_sequence();
	CREATE TRIGGER anchor_no_update BEFORE UPDATE ON anchor FOR EACH ROW EXECUTE FUNCTION retention_only('the audit anchor is moved by retention only');
	CREATE TRIGGER anchor_no_delete BEFORE DELETE ON anchor FOR EACH ROW EXECUTE FUNCTION refuse('the audit anchor cannot be deleted');
	CREATE TRIGGER meta_no_update BEFORE UPDATE ON meta FOR EACH ROW EXECUTE FUNCTION refuse('audit metadata cannot be changed');
	CREATE TRIGGER meta_no_delete BEFORE DELETE ON meta FOR EACH ROW EXECUTE FUNCTION refuse('audit metadata cannot be deleted');`,
}

// openPostgres makes the audit schema in the database at dsn if it is not
// there and opens it, its migrations run.
func openPostgres(dsn string) (*sql.DB, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return nil, errors.New("not a postgres:// URL")
	}
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, err
	}
	// Hubs starting together: one makes the schema, the others wait for
	// its lock and find it.
	err = func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback() //nolint:errcheck // a no-op after Commit
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(pgLock)); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `CREATE SCHEMA IF NOT EXISTS `+pgSchema); err != nil {
			return err
		}
		return tx.Commit()
	}()
	if err = errors.Join(err, db.Close()); err != nil {
		return nil, fmt.Errorf("make schema %s: %w", pgSchema, err)
	}
	q := u.Query()
	q.Set("search_path", pgSchema)
	u.RawQuery = q.Encode()
	return schema.OpenPostgres(u.String(), pgMigrations, pgOptions)
}
