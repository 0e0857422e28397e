package testenv

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// defaultPostgres is the server tests use unless CITYWATCH_PG_URL names
// another: PostgreSQL 15 on this machine, role postgres, trust
// authentication.
const defaultPostgres = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// Postgres creates a database of the test's own, cw_<random>, and returns
// its URL (postgres://…/cw_<random>). Unlike the other services,
// PostgreSQL is not started per test: initialising a server takes seconds,
// and a database of its own isolates a test as well. The server is
// $CITYWATCH_PG_URL, a postgres:// URL of a role that may create
// databases, or else postgres@127.0.0.1:5432. The database is dropped in
// t.Cleanup, with any session still connected to it. A server that does
// not answer fails the test.
func Postgres(t testing.TB) string {
	t.Helper()
	server := defaultPostgres
	if env := os.Getenv("CITYWATCH_PG_URL"); env != "" {
		server = env
	}
	u, err := url.Parse(server)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		t.Fatal("testenv: CITYWATCH_PG_URL must be a postgres:// URL") // not quoted: it may hold a password
	}
	// Unquoted names fold to lower case; rand.Text is 26 base32 characters.
	name := "cw_" + strings.ToLower(rand.Text())
	if err := postgresExec(server, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("testenv: PostgreSQL at %s: %v (start a PostgreSQL 15 server there, role postgres with trust authentication, or point CITYWATCH_PG_URL at one)",
			u.Redacted(), err)
	}
	t.Cleanup(func() {
		if err := postgresExec(server, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("testenv: drop database %s: %v", name, err)
		}
	})
	u.Path = "/" + name
	return u.String()
}

// postgresExec runs one statement (CREATE and DROP DATABASE cannot run in
// a transaction) on a connection of its own to the server's URL.
func postgresExec(server, stmt string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, server)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, stmt); err != nil {
		return fmt.Errorf("%s: %w", stmt, err)
	}
	return nil
}
