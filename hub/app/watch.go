package app

import (
	"context"
	"fmt"
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
				a.securityNotice(alarm.TypeAuditFailure, "audit records could not be written: "+why)
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
				a.securityNotice(alarm.TypeAuditTampered, "the audit trail does not verify from record "+
					strconv.FormatUint(rep.FirstBroken.Seq, 10)+": "+rep.FirstBroken.Reason)
			default:
				a.log.Info("audit trail verified", "records", rep.Records, "head", rep.HeadSeq)
			}
		}
	}
}

// lossEvery is how often the stores' losses are looked at.
const lossEvery = 10 * time.Second

// watchLosses raises a system alarm when a store starts losing records,
// once per episode: the history's device transitions (availability reports
// would miss them) and InfluxDB's points (the metrics store falling
// behind).
func (a *App) watchLosses(ctx context.Context) error {
	checks := []struct {
		typ    string
		health func() (bool, string)
	}{{alarm.TypeHistoryDropping, a.history.Health}, {alarm.TypeMetricsDropping, a.metricsHealth}}
	failing := make([]bool, len(checks))
	t := time.NewTicker(lossEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			for i, c := range checks {
				ok, why := c.health()
				if !ok && !failing[i] {
					a.alarms.Notice(alarm.Alarm{Key: string(alarm.SourceSystem) + ":hub/" + c.typ, Source: alarm.SourceSystem,
						Type: c.typ, Criticality: 4, Detail: why})
				}
				failing[i] = !ok
			}
		}
	}
}

// dropWindow is how long after a dropped point the metrics store counts
// as losing data.
const dropWindow = time.Minute

// metricsHealth says whether InfluxDB keeps up: no point dropped for a
// full queue within dropWindow.
func (a *App) metricsHealth() (bool, string) {
	st := a.store.Status()
	if st.LastDropAt.IsZero() || time.Since(st.LastDropAt) > dropWindow {
		return true, ""
	}
	return false, fmt.Sprintf("InfluxDB is falling behind: %d points dropped so far (memory queue of %d, spill %d of %d bytes), the last at %s",
		st.Dropped, st.QueueCap, st.SpillBytes, st.SpillMaxBytes, st.LastDropAt.UTC().Format(time.RFC3339))
}

// securityNotice raises a security alarm of the hub itself.
func (a *App) securityNotice(typ, detail string) {
	a.alarms.Notice(alarm.Alarm{Key: string(alarm.SourceSecurity) + ":hub/" + typ, Source: alarm.SourceSecurity,
		Type: typ, Criticality: 5, Detail: detail})
}
