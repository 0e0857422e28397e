// Package cli is citywatch-hub's command line: running the hub, and the
// administration done on the hub's machine before anyone can sign in or
// when nobody can — the first administrator, agent credentials, Mosquitto
// files, API tokens, and checking and exporting the audit trail. The
// commands work on the hub's data directory directly, also while the hub
// runs (it notices within a second), and each act is audited as
// "cli:USER" from "local". Main returns the process's exit code, so the
// whole command line runs inside tests.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/citywatch/citywatch/hub/app"
	"github.com/citywatch/citywatch/hub/audit"
	"github.com/citywatch/citywatch/hub/config"
	"github.com/citywatch/citywatch/hub/identity"
	"github.com/citywatch/citywatch/hub/metrics"
)

// IO is where a command reads and writes.
type IO struct {
	In       io.Reader
	Out, Err io.Writer
	// Env looks up environment variables (os.LookupEnv).
	Env func(string) (string, bool)
}

// errUsage is a mistake on the command line; Main prints the usage.
var errUsage = errors.New("usage")

const usage = `citywatch-hub runs the hub, or administers it on its own machine.

  citywatch-hub [-config FILE]                        run the hub
  citywatch-hub users add -role ROLE [-scope SCOPE] [-display NAME] [-grant PERM]... [-password-stdin] NAME
  citywatch-hub users list | unlock NAME | reset-password NAME | reset-totp NAME
  citywatch-hub tokens add -role ROLE -expires 720h [-scope SCOPE] NAME
  citywatch-hub tokens list | revoke ID
  citywatch-hub agents enroll AGENT_ID | revoke AGENT_ID | list
  citywatch-hub agents mosquitto -passwd FILE -acl FILE
  citywatch-hub audit verify [-head SEQ:HASH] | head | export [-format csv|jsonl] [-from T] [-to T] [-o FILE]

Every command takes -config FILE (the hub's configuration: data_dir and the
policies). SCOPE is "all" or district:ID and site:ID separated by commas.
The first account is made here: there is no default account and no default
password.
`

// Main runs one command line (without the program name) and returns the
// exit code: 0 done, 1 failed, 2 a mistake in the command line or the
// configuration.
func Main(ctx context.Context, args []string, stdio IO) int {
	err := run(ctx, args, stdio)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprint(stdio.Err, usage)
		return 2
	case errors.Is(err, errConfig):
		fmt.Fprintln(stdio.Err, err)
		return 2
	default:
		fmt.Fprintln(stdio.Err, err)
		return 1
	}
}

var errConfig = errors.New("config")

func run(ctx context.Context, args []string, stdio IO) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") || args[0] == "serve" {
		if len(args) > 0 && args[0] == "serve" {
			args = args[1:]
		}
		return serve(ctx, args, stdio)
	}
	cmd, rest := args[0], args[1:]
	if len(rest) == 0 {
		return errUsage
	}
	sub, rest := rest[0], rest[1:]
	switch cmd + " " + sub {
	case "users add":
		return usersAdd(ctx, rest, stdio)
	case "users list", "users unlock", "users reset-password", "users reset-totp":
		return usersOther(ctx, sub, rest, stdio)
	case "tokens add":
		return tokensAdd(ctx, rest, stdio)
	case "tokens list", "tokens revoke":
		return tokensOther(ctx, sub, rest, stdio)
	case "agents enroll", "agents revoke", "agents list":
		return agents(ctx, sub, rest, stdio)
	case "agents mosquitto":
		return mosquitto(ctx, rest, stdio)
	case "audit verify", "audit head", "audit export":
		return auditCmd(ctx, sub, rest, stdio)
	}
	return errUsage
}

// serve runs the hub until ctx ends.
func serve(ctx context.Context, args []string, stdio IO) error {
	fs := flag.NewFlagSet("citywatch-hub", flag.ContinueOnError)
	fs.SetOutput(stdio.Err)
	path := fs.String("config", "", "YAML configuration file (defaults and environment variables apply without one)")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		return errUsage
	}
	cfg, err := loadConfig(*path, stdio)
	if err != nil {
		return err
	}
	log := config.NewLogger(cfg.Log, stdio.Err)
	hub, err := app.New(cfg, log)
	if err != nil {
		return fmt.Errorf("%w: %w", errConfig, err)
	}
	// SIGHUP reloads what a running hub can change (rules, maintenance
	// windows, webhooks, certificates) from the same file and environment.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				log.Info("SIGHUP: reloading the configuration", "file", *path)
				cfg, err := loadConfig(*path, stdio)
				if err != nil {
					log.Error("configuration not reloaded; nothing changed", "err", err)
					continue
				}
				_ = hub.Reload(ctx, cfg) // it logs and audits its outcome
			}
		}
	}()
	if err := hub.Run(ctx); err != nil {
		log.Error("hub stopped", "error", err)
		return errors.New("hub stopped with an error")
	}
	return nil
}

func loadConfig(path string, stdio IO) (config.Config, error) {
	var data []byte
	if path != "" {
		var err error
		if data, err = os.ReadFile(path); err != nil {
			return config.Config{}, fmt.Errorf("%w: %w", errConfig, err)
		}
	}
	env := stdio.Env
	if env == nil {
		env = func(string) (string, bool) { return "", false }
	}
	cfg, err := config.Parse(data, env)
	if err != nil {
		return config.Config{}, fmt.Errorf("%w: %w", errConfig, err)
	}
	return cfg, nil
}

// admin is what a command works with: the hub's configuration, its audit
// trail and its identity service, opened from data_dir.
type admin struct {
	cfg   config.Config
	audit *audit.Log
	store *identity.DBStore
	id    *identity.Service
	actor identity.Actor
}

// flags parses a command's flags (-config among them) and returns the
// positional arguments; want is how many there must be.
func flags(fs *flag.FlagSet, args []string, want int, stdio IO) (string, []string, error) {
	fs.SetOutput(stdio.Err)
	path := fs.String("config", "", "the hub's YAML configuration file")
	// Flags may follow the positional arguments too: "users add alice -role operator".
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return "", nil, errUsage
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(pos) != want {
		return "", nil, errUsage
	}
	return *path, pos, nil
}

func open(path string, stdio IO) (*admin, error) {
	cfg, err := loadConfig(path, stdio)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(cfg.DataDir); err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return nil, fmt.Errorf("data_dir: %w", err)
		}
	}
	log := slog.New(slog.NewTextHandler(stdio.Err, &slog.HandlerOptions{Level: slog.LevelWarn}))
	a := &admin{cfg: cfg, actor: identity.Actor{Name: "cli:" + osUser(), Role: "cli", Remote: "local"}}
	a.audit, err = audit.Open(cfg.SharedDB("audit.db"),
		audit.Options{KeyFile: filepath.Join(cfg.DataDir, "audit.key"), Retention: cfg.Audit.Retention},
		audit.Deps{Log: log})
	if err != nil {
		return nil, err
	}
	a.store, err = identity.Open(cfg.SharedDB("identity.db"))
	if err != nil {
		return nil, errors.Join(err, a.audit.Close())
	}
	a.id, err = identity.New(app.IdentityConfig(cfg), identity.Deps{Store: a.store, Log: log, Metrics: metrics.NewRegistry(), Audit: a.audit})
	if err != nil {
		return nil, errors.Join(err, a.close())
	}
	return a, nil
}

func (a *admin) close() error { return errors.Join(a.store.Close(), a.audit.Close()) }

// osUser names who runs the command, for the audit trail.
func osUser() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return fmt.Sprint(os.Getuid())
}

// multi collects a repeated flag.
type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

// oneOf reports whether s is among the choices, for flags.
func oneOf(s string, choices ...string) error {
	if slices.Contains(choices, s) {
		return nil
	}
	return fmt.Errorf("%q is not one of %s", s, strings.Join(choices, ", "))
}
