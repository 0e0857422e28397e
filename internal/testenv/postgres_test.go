package testenv_test

import (
	"context"
	"fmt"
	"net/url"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/citywatch/citywatch/internal/testenv"
)

func pgConnect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect %s: %v", dsn, err)
	}
	return conn
}

func TestPostgres(t *testing.T) {
	ctx := context.Background()
	var dsns []string
	var left []*pgx.Conn // still connected when their databases are dropped
	defer func() {
		for _, c := range left {
			c.Close(ctx)
		}
	}()
	t.Run("databases", func(t *testing.T) {
		for range 2 {
			dsn := testenv.Postgres(t)
			dsns = append(dsns, dsn)
			conn := pgConnect(t, dsn)
			var name string
			if err := conn.QueryRow(ctx, `SELECT current_database()`).Scan(&name); err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(name, "cw_") || !strings.HasSuffix(dsn, "/"+name+"?sslmode=disable") {
				t.Errorf("connected to %q through %s", name, dsn)
			}
			if _, err := conn.Exec(ctx, `CREATE TABLE t (n BIGINT); INSERT INTO t VALUES (1)`); err != nil {
				t.Fatal(err)
			}
			left = append(left, conn)
		}
		if dsns[0] == dsns[1] {
			t.Errorf("two calls returned one database %s", dsns[0])
		}
	})

	// The server the databases were in, through its maintenance database.
	u, err := url.Parse(dsns[0])
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/postgres"
	server := pgConnect(t, u.String())
	defer server.Close(ctx)
	for _, dsn := range dsns {
		u, _ := url.Parse(dsn)
		var n int
		if err := server.QueryRow(ctx, `SELECT COUNT(*) FROM pg_database WHERE datname = $1`, u.Path[1:]).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("database %s is still there after its test", u.Path[1:])
		}
	}
}

// fatalTB records a Fatalf and ends the goroutine, as testing.T does.
type fatalTB struct {
	testing.TB
	msg chan string
}

func (f *fatalTB) Helper() {}

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg <- fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestPostgresUnreachable(t *testing.T) {
	server := fmt.Sprintf("postgres://postgres:secret@127.0.0.1:%d/postgres", testenv.FreePort(t))
	t.Setenv("CITYWATCH_PG_URL", server)
	f := &fatalTB{TB: t, msg: make(chan string, 1)}
	go func() {
		testenv.Postgres(f)
		f.msg <- "" // no failure
	}()
	msg := <-f.msg
	for _, want := range []string{"testenv: PostgreSQL at postgres://postgres:xxxxx@127.0.0.1:", "CITYWATCH_PG_URL"} {
		if !strings.Contains(msg, want) {
			t.Errorf("failure %q does not say %q", msg, want)
		}
	}
	if strings.Contains(msg, "secret") {
		t.Errorf("failure %q shows the password", msg)
	}
}
