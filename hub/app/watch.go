package app

import (
	"context"
	"strconv"
	"time"

	"github.com/citywatch/citywatch/hub/alarm"
)

// Intervals of watchAudit.
const (
	auditHealthEvery = 10 * time.Second
	auditVerifyEvery = 24 * time.Hour
)

// watchAudit turns trouble with the evidence into alarms: records that
// could not be written (raised when writing starts failing), and a chain
// that no longer verifies (checked at start and daily), which means someone
// changed the database behind the hub's back.
func (a *App) watchAudit(ctx context.Context) error {
	health := time.NewTicker(auditHealthEvery)
	defer health.Stop()
	verify := time.NewTimer(time.Minute) // after start-up's burst of work
	defer verify.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-health.C:
			ok, why, _ := a.audit.Health()
			if !ok && !failing {
				a.securityNotice("audit_failure", "audit records could not be written: "+why)
			}
			failing = !ok
		case <-verify.C:
			verify.Reset(auditVerifyEvery)
			rep, err := a.audit.Verify(ctx)
			switch {
			case ctx.Err() != nil:
				return nil
			case err != nil:
				a.log.Error("audit trail not verified", "err", err)
			case !rep.OK && rep.FirstBroken != nil:
				a.log.Error("audit trail broken", "seq", rep.FirstBroken.Seq, "reason", rep.FirstBroken.Reason)
				a.securityNotice("audit_tampered", "the audit trail does not verify from record "+
					strconv.FormatUint(rep.FirstBroken.Seq, 10)+": "+rep.FirstBroken.Reason)
			default:
				a.log.Info("audit trail verified", "records", rep.Records, "head", rep.HeadSeq)
			}
		}
	}
}

// watchHistory raises an alarm when the history starts losing device
// transitions (availability reports would miss them), once per episode.
func (a *App) watchHistory(ctx context.Context) error {
	t := time.NewTicker(auditHealthEvery)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			ok, why := a.history.Health()
			if !ok && !failing {
				a.alarms.Notice(alarm.Alarm{Key: string(alarm.SourceSystem) + ":hub/history_dropping", Source: alarm.SourceSystem,
					Type: "history_dropping", Criticality: 4, Detail: why})
			}
			failing = !ok
		}
	}
}

// securityNotice raises a security alarm of the hub itself.
func (a *App) securityNotice(typ, detail string) {
	a.alarms.Notice(alarm.Alarm{Key: string(alarm.SourceSecurity) + ":hub/" + typ, Source: alarm.SourceSecurity,
		Type: typ, Criticality: 5, Detail: detail})
}
