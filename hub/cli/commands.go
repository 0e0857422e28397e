package cli

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/citywatch/citywatch/hub/audit"
	"github.com/citywatch/citywatch/hub/auth"
	"github.com/citywatch/citywatch/hub/broker"
	"github.com/citywatch/citywatch/hub/identity"
)

// withAdmin opens the data directory, runs do, and closes it.
func withAdmin(path string, stdio IO, do func(a *admin) error) error {
	a, err := open(path, stdio)
	if err != nil {
		return err
	}
	return errors.Join(do(a), a.close())
}

// access reads -role, -scope and -grant.
type access struct {
	role   string
	scope  string
	grants multi
}

func (ac *access) flags(fs *flag.FlagSet) {
	fs.StringVar(&ac.role, "role", "", "operator, supervisor, maintainer, analyst, auditor, security_admin or admin")
	fs.StringVar(&ac.scope, "scope", "all", `"all", or district:ID and site:ID separated by commas`)
	fs.Var(&ac.grants, "grant", "a permission beyond the role's (repeat for more)")
}

func (ac *access) parse() (auth.Role, auth.Scope, []auth.Permission, error) {
	role, err := auth.ParseRole(ac.role)
	if err != nil {
		return "", auth.Scope{}, nil, err
	}
	scope, err := auth.ParseScope(ac.scope)
	if err != nil {
		return "", auth.Scope{}, nil, err
	}
	var grants []auth.Permission
	for _, g := range ac.grants {
		grants = append(grants, auth.Permission(g))
	}
	return role, scope, grants, auth.CheckGrants(grants)
}

func usersAdd(ctx context.Context, args []string, stdio IO) error {
	fs := flag.NewFlagSet("users add", flag.ContinueOnError)
	var ac access
	ac.flags(fs)
	display := fs.String("display", "", "the name people see")
	fromStdin := fs.Bool("password-stdin", false, "read the password from the first line of standard input; "+
		"it need not be changed at first login (otherwise one is made, shown once, and must be changed)")
	path, pos, err := flags(fs, args, 1, stdio)
	if err != nil {
		return err
	}
	role, scope, grants, err := ac.parse()
	if err != nil {
		return fmt.Errorf("%w: %w", errConfig, err)
	}
	spec := identity.AccountSpec{Name: pos[0], DisplayName: *display, Role: role, Scope: scope, Grants: grants}
	if *fromStdin {
		line, err := bufio.NewReader(stdio.In).ReadString('\n')
		if err != nil && line == "" {
			return fmt.Errorf("no password on standard input: %w", err)
		}
		spec.Password, spec.OwnPassword = strings.TrimRight(line, "\r\n"), true
	}
	return withAdmin(path, stdio, func(a *admin) error {
		acct, initial, err := a.id.AddAccount(ctx, a.actor, spec)
		if err != nil {
			return describe(err)
		}
		fmt.Fprintf(stdio.Out, "account %s (%s, scope %s) created\n", acct.Name, acct.Role, acct.Scope)
		if initial != "" {
			fmt.Fprintf(stdio.Out, "initial password (shown once; it must be changed at first login): %s\n", initial)
		}
		if slices.Contains(a.cfg.Auth.TOTPRoles, string(acct.Role)) {
			fmt.Fprintln(stdio.Out, "this role signs in with a second factor: the console asks to enrol it at first login")
		}
		return nil
	})
}

func usersOther(ctx context.Context, sub string, args []string, stdio IO) error {
	want := 1
	if sub == "list" {
		want = 0
	}
	path, pos, err := flags(flag.NewFlagSet("users "+sub, flag.ContinueOnError), args, want, stdio)
	if err != nil {
		return err
	}
	return withAdmin(path, stdio, func(a *admin) error {
		switch sub {
		case "list":
			list, err := a.id.Accounts(ctx)
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(stdio.Out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NAME\tROLE\tSCOPE\tTOTP\tSTATE\tLAST LOGIN")
			for _, u := range list {
				fmt.Fprintf(w, "%s\t%s\t%s\t%v\t%s\t%s\n", u.Name, u.Role, u.Scope, u.TOTPEnabled, accountState(u), when(u.LastLoginAt))
			}
			return w.Flush()
		case "unlock":
			_, err := a.id.Unlock(ctx, a.actor, pos[0])
			return report(stdio, describe(err), "unlocked "+pos[0])
		case "reset-password":
			_, pw, err := a.id.SetPassword(ctx, a.actor, pos[0], "")
			return report(stdio, describe(err), "password of "+pos[0]+" reset; new initial password (shown once; it must be changed at next login): "+pw)
		default: // reset-totp
			_, err := a.id.ResetTOTP(ctx, a.actor, pos[0])
			return report(stdio, describe(err), "second factor of "+pos[0]+" reset; it must be enrolled again at next login")
		}
	})
}

func tokensAdd(ctx context.Context, args []string, stdio IO) error {
	fs := flag.NewFlagSet("tokens add", flag.ContinueOnError)
	var ac access
	ac.flags(fs)
	expires := fs.Duration("expires", 0, "how long the token works, e.g. 720h (required)")
	path, pos, err := flags(fs, args, 1, stdio)
	if err != nil {
		return err
	}
	role, scope, grants, err := ac.parse()
	if err == nil && *expires <= 0 {
		err = errors.New("-expires is required: tokens do not live for ever")
	}
	if err != nil {
		return fmt.Errorf("%w: %w", errConfig, err)
	}
	return withAdmin(path, stdio, func(a *admin) error {
		tok, secret, err := a.id.AddToken(ctx, a.actor, identity.TokenSpec{
			Name: pos[0], Role: role, Scope: scope, Grants: grants, ExpiresAt: time.Now().Add(*expires),
		})
		if err != nil {
			return describe(err)
		}
		fmt.Fprintf(stdio.Err, "token %s (%s, %s, scope %s) expires %s; its secret is shown once:\n",
			tok.Name, tok.ID, tok.Role, tok.Scope, tok.ExpiresAt.Format(time.RFC3339))
		fmt.Fprintln(stdio.Out, secret)
		return nil
	})
}

func tokensOther(ctx context.Context, sub string, args []string, stdio IO) error {
	want := 1
	if sub == "list" {
		want = 0
	}
	path, pos, err := flags(flag.NewFlagSet("tokens "+sub, flag.ContinueOnError), args, want, stdio)
	if err != nil {
		return err
	}
	return withAdmin(path, stdio, func(a *admin) error {
		if sub == "revoke" {
			_, err := a.id.RevokeToken(ctx, a.actor, pos[0])
			return report(stdio, describe(err), "token "+pos[0]+" revoked")
		}
		list, err := a.id.Tokens(ctx)
		if err != nil {
			return err
		}
		w := tabwriter.NewWriter(stdio.Out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "ID\tNAME\tROLE\tSCOPE\tEXPIRES\tSTATE")
		for _, t := range list {
			state := "active"
			if !t.RevokedAt.IsZero() {
				state = "revoked"
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Name, t.Role, t.Scope, when(t.ExpiresAt), state)
		}
		return w.Flush()
	})
}

func agents(ctx context.Context, sub string, args []string, stdio IO) error {
	want := 1
	if sub == "list" {
		want = 0
	}
	path, pos, err := flags(flag.NewFlagSet("agents "+sub, flag.ContinueOnError), args, want, stdio)
	if err != nil {
		return err
	}
	return withAdmin(path, stdio, func(a *admin) error {
		switch sub {
		case "enroll":
			secret, err := a.id.EnrollAgent(ctx, a.actor, pos[0])
			if err != nil {
				return describe(err)
			}
			fmt.Fprintf(stdio.Err, "agent %s enrolled; put its secret in the agent's broker.password (shown once):\n", pos[0])
			fmt.Fprintln(stdio.Out, secret)
			return nil
		case "revoke":
			err := a.id.RevokeAgent(ctx, a.actor, pos[0])
			return report(stdio, describe(err), "agent "+pos[0]+" revoked; a running hub disconnects it within seconds")
		}
		list, err := a.id.AgentCredentials(ctx)
		if err != nil {
			return err
		}
		w := tabwriter.NewWriter(stdio.Out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "AGENT\tENROLLED\tBY\tSTATE")
		for _, c := range list {
			state := "active"
			if !c.Active() {
				state = "revoked " + when(c.RevokedAt) + " by " + c.RevokedBy
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", c.Agent, when(c.CreatedAt), c.CreatedBy, state)
		}
		return w.Flush()
	})
}

// mosquitto writes a password file and an ACL for an external Mosquitto
// from the enrolled agents and the hub's own login (mqtt.username and
// mqtt.password).
func mosquitto(ctx context.Context, args []string, stdio IO) error {
	fs := flag.NewFlagSet("agents mosquitto", flag.ContinueOnError)
	passwd := fs.String("passwd", "", "password file to write (Mosquitto's password_file)")
	acl := fs.String("acl", "", "ACL file to write (Mosquitto's acl_file)")
	path, _, err := flags(fs, args, 0, stdio)
	if err != nil {
		return err
	}
	if *passwd == "" || *acl == "" {
		return fmt.Errorf("%w: -passwd and -acl are required", errConfig)
	}
	return withAdmin(path, stdio, func(a *admin) error {
		user, pw := a.cfg.MQTT.Username, string(a.cfg.MQTT.Password)
		if user == "" || pw == "" {
			return fmt.Errorf("%w: mqtt.username and mqtt.password (the hub's own login) are needed for the password file", errConfig)
		}
		hash, err := broker.HashSecret(pw)
		if err != nil {
			return err
		}
		pf, err := os.OpenFile(*passwd, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
		if err != nil {
			return err
		}
		af, err := os.OpenFile(*acl, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
		if err != nil {
			return errors.Join(err, pf.Close())
		}
		err = a.id.WriteMosquittoFiles(ctx, pf, af, user, hash)
		if err = errors.Join(err, pf.Close(), af.Close()); err != nil {
			return err
		}
		fmt.Fprintf(stdio.Out, "wrote %s and %s; reload Mosquitto (kill -HUP) to use them\n", *passwd, *acl)
		return nil
	})
}

func auditCmd(ctx context.Context, sub string, args []string, stdio IO) error {
	fs := flag.NewFlagSet("audit "+sub, flag.ContinueOnError)
	head := fs.String("head", "", "verify: a head written down earlier, SEQ:HASH, to catch the newest records removed")
	format := fs.String("format", audit.FormatJSONL, "export: csv or jsonl (jsonl can be verified again with the key)")
	from := fs.String("from", "", "export: records from this RFC 3339 time")
	to := fs.String("to", "", "export: records before this RFC 3339 time")
	out := fs.String("o", "", "export: file to write (default standard output)")
	path, _, err := flags(fs, args, 0, stdio)
	if err != nil {
		return err
	}
	return withAdmin(path, stdio, func(a *admin) error {
		switch sub {
		case "verify":
			return verify(ctx, a, *head, stdio)
		case "head":
			seq, hash, err := a.audit.Head(ctx)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdio.Out, "%d:%s\n", seq, hash)
			return nil
		}
		if err := oneOf(*format, audit.FormatCSV, audit.FormatJSONL); err != nil {
			return fmt.Errorf("%w: -format %w", errConfig, err)
		}
		var f audit.Filter
		for _, t := range []struct {
			raw string
			to  *time.Time
		}{{*from, &f.From}, {*to, &f.To}} {
			if t.raw == "" {
				continue
			}
			if *t.to, err = time.Parse(time.RFC3339, t.raw); err != nil {
				return fmt.Errorf("%w: %q is not an RFC 3339 time", errConfig, t.raw)
			}
		}
		return export(ctx, a, f, *format, *out, stdio)
	})
}

func verify(ctx context.Context, a *admin, head string, stdio IO) error {
	var cp audit.Checkpoint
	if head != "" {
		seq, hash, ok := strings.Cut(head, ":")
		n, err := strconv.ParseUint(seq, 10, 64)
		if !ok || err != nil {
			return fmt.Errorf("%w: -head %q is not SEQ:HASH", errConfig, head)
		}
		cp = audit.Checkpoint{Seq: n, Hash: hash}
	}
	rep, err := a.audit.VerifyHead(ctx, cp)
	if err != nil {
		return err
	}
	outcome := audit.Success
	if !rep.OK {
		outcome = audit.Failure
	}
	if _, err := a.audit.Append(ctx, audit.Record{Actor: a.actor.Name, Role: a.actor.Role, Remote: a.actor.Remote,
		Action: audit.VerifyAction, Outcome: outcome, Detail: fmt.Sprintf("%d records", rep.Records)}); err != nil {
		fmt.Fprintln(stdio.Err, "warning: this verification could not be recorded:", err)
	}
	if !rep.OK {
		seq, why := uint64(0), "broken"
		if rep.FirstBroken != nil {
			seq, why = rep.FirstBroken.Seq, rep.FirstBroken.Reason
		}
		return fmt.Errorf("audit trail BROKEN at record %d: %s (%d records read)", seq, why, rep.Records)
	}
	fmt.Fprintf(stdio.Out, "audit trail OK: %d records from seq %d to %d; head %d:%s; key %s\n",
		rep.Records, rep.AnchorSeq+1, rep.HeadSeq, rep.HeadSeq, rep.HeadHash, rep.KeyFingerprint)
	if rep.Checkpoint != "" {
		fmt.Fprintf(stdio.Out, "checkpoint %s\n", rep.Checkpoint)
	}
	return nil
}

func export(ctx context.Context, a *admin, f audit.Filter, format, out string, stdio IO) error {
	w, closeOut := stdio.Out, func() error { return nil }
	if out != "" {
		file, err := os.OpenFile(out, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
		if err != nil {
			return err
		}
		w, closeOut = file, file.Close
	}
	// The export is recorded first: an export that cannot be recorded does
	// not happen.
	detail := "format " + format + "; " + f.Values().Encode()
	if _, err := a.audit.Append(ctx, audit.Record{Actor: a.actor.Name, Role: a.actor.Role, Remote: a.actor.Remote,
		Action: audit.ExportAction, Outcome: audit.Success, Detail: detail}); err != nil {
		return errors.Join(fmt.Errorf("export not recorded, so not made: %w", err), closeOut())
	}
	n, err := a.audit.Export(ctx, w, f, format)
	if err = errors.Join(err, closeOut()); err != nil {
		return err
	}
	fmt.Fprintf(stdio.Err, "%d records exported\n", n)
	return nil
}

// describe turns the identity service's refusals (whose text names every
// problem) into plain errors.
func describe(err error) error {
	if e, ok := errors.AsType[*identity.Error](err); ok {
		return errors.New(e.Msg)
	}
	return err
}

func report(stdio IO, err error, done string) error {
	if err == nil {
		fmt.Fprintln(stdio.Out, done)
	}
	return err
}

func accountState(u identity.Account) string {
	switch {
	case u.Disabled:
		return "disabled"
	case time.Now().Before(u.LockedUntil):
		return "locked until " + u.LockedUntil.Format(time.RFC3339)
	case u.MustChangePassword:
		return "must change password"
	}
	return "active"
}

func when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04")
}
