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
				a.securityNotice(alarm.TypeAuditFailure, "audit records could not be written: "+why, map[string]string{"error": why})
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
				seq := strconv.FormatUint(rep.FirstBroken.Seq, 10)
				a.securityNotice(alarm.TypeAuditTampered, "the audit trail does not verify from record "+seq+": "+rep.FirstBroken.Reason,
					map[string]string{"seq": seq, "broken": rep.FirstBroken.Kind})
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
		typ     string
		trouble func() (why string, args map[string]string)
	}{{alarm.TypeHistoryDropping, a.historyTrouble}, {alarm.TypeMetricsDropping, a.metricsTrouble}}
	failing := make([]bool, len(checks))
	t := time.NewTicker(lossEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			for i, c := range checks {
				why, args := c.trouble()
				if why != "" && !failing[i] {
					a.alarms.Notice(alarm.Alarm{Key: string(alarm.SourceSystem) + ":hub/" + c.typ, Source: alarm.SourceSystem,
						Type: c.typ, Criticality: 4, Detail: why, Args: args})
				}
				failing[i] = why != ""
			}
		}
	}
}

// dropWindow is how long after a dropped point the metrics store counts
// as losing data.
const dropWindow = time.Minute

// historyTrouble says what keeps the history of device transitions from
// recording everything ("" when nothing does), and its figures.
func (a *App) historyTrouble() (string, map[string]string) {
	t := a.history.Trouble()
	switch {
	case t == nil:
		return "", nil
	case t.Err != nil:
		return t.String(), map[string]string{"op": t.Op, "error": t.Err.Error()}
	}
	return t.String(), map[string]string{"op": t.Op, "lost": strconv.FormatUint(t.Lost, 10), "at": t.At.UTC().Format(time.RFC3339)}
}

// metricsTrouble says whether InfluxDB keeps up ("" when it does: no
// point dropped for a full queue within dropWindow), and its figures.
func (a *App) metricsTrouble() (string, map[string]string) {
	st := a.store.Status()
	if st.LastDropAt.IsZero() || time.Since(st.LastDropAt) > dropWindow {
		return "", nil
	}
	at := st.LastDropAt.UTC().Format(time.RFC3339)
	return fmt.Sprintf("InfluxDB is falling behind: %d points dropped so far (memory queue of %d, spill %d of %d bytes), the last at %s",
			st.Dropped, st.QueueCap, st.SpillBytes, st.SpillMaxBytes, at),
		map[string]string{"dropped": strconv.FormatUint(st.Dropped, 10), "queue": strconv.Itoa(st.QueueCap),
			"spill": strconv.FormatInt(st.SpillBytes, 10), "spill_max": strconv.FormatInt(st.SpillMaxBytes, 10), "at": at}
}

// securityNotice raises a security alarm of the hub itself; args are the
// detail's figures.
func (a *App) securityNotice(typ, detail string, args map[string]string) {
	a.alarms.Notice(alarm.Alarm{Key: string(alarm.SourceSecurity) + ":hub/" + typ, Source: alarm.SourceSecurity,
		Type: typ, Criticality: 5, Detail: detail, Args: args})
}
