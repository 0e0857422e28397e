package alarm

import (
	"math"
	"strconv"

	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/wire"
)

// Metric thresholds: a threshold rule names a metric of the agents' health
// reports (wire.Metric*) and a limit; a device whose metric is past the
// limit has the condition "threshold:device/<id>/<metric>", and hold,
// clear_hold, flapping and escalation work on it as on any other.

// parseThreshold fills r's threshold fields from y, reporting problems
// through bad.
func parseThreshold(r *Rule, y yamlRule, bad func(format string, args ...any)) {
	r.Metric = y.Metric
	if y.Metric == "" {
		bad("metric is required for threshold rules")
	} else if err := wire.ValidID(y.Metric); err != nil {
		bad("metric: %v", err)
	}
	if r.SensorKind != "" {
		// Health samples do not carry the sensor kind.
		bad("sensor_kind is not supported for threshold rules")
	}
	switch {
	case (y.Below == nil) == (y.Above == nil):
		bad("threshold rules need exactly one of below and above")
	case y.Above != nil:
		r.Above, r.Limit = true, *y.Above
	default:
		r.Limit = *y.Below
	}
	if math.IsNaN(r.Limit) || math.IsInf(r.Limit, 0) {
		bad("threshold %v is not a finite number", r.Limit)
	}
}

// past reports whether v is past a threshold rule's limit.
func (r Rule) past(v float64) bool {
	if r.Above {
		return v > r.Limit
	}
	return v < r.Limit
}

// thresholdMetric is one metric some threshold rule names, with its rules.
type thresholdMetric struct {
	name  string
	rules []Rule
}

// thresholdMetrics indexes the threshold rules by metric, so ObserveSamples
// looks at those metrics only.
func thresholdMetrics(rs Rules) []thresholdMetric {
	var out []thresholdMetric
	at := map[string]int{}
	for _, r := range rs {
		if r.Source != SourceThreshold {
			continue
		}
		i, ok := at[r.Metric]
		if !ok {
			i = len(out)
			at[r.Metric] = i
			out = append(out, thresholdMetric{name: r.Metric})
		}
		out[i].rules = append(out[i].rules, r)
	}
	return out
}

// rule returns the rule for a device of kind dk: one naming the kind beats
// one without. An empty dk (unknown, as for a restored alarm) takes the
// rule without a kind, else the first.
func (t *thresholdMetric) rule(dk wire.DeviceKind) (Rule, bool) {
	var general *Rule
	for i := range t.rules {
		r := &t.rules[i]
		switch {
		case r.DeviceKind == "":
			general = r
		case r.DeviceKind == dk:
			return *r, true
		}
	}
	if general != nil {
		return *general, true
	}
	if dk == "" && len(t.rules) > 0 {
		return t.rules[0], true
	}
	return Rule{}, false
}

// thresholdRule is the rule of metric for dk among ts.
func thresholdRule(ts []thresholdMetric, metric string, dk wire.DeviceKind) (Rule, bool) {
	for i := range ts {
		if ts[i].name == metric {
			return ts[i].rule(dk)
		}
	}
	return Rule{}, false
}

const thresholdPrefix = string(SourceThreshold) + ":device/"

// ObserveSamples checks accepted health samples against the threshold
// rules. It is called for every health report, so it looks only at the
// metrics some rule names, and builds nothing for a value within its limit
// that has no condition. A sample without the metric (or with a value that
// is not finite) leaves the condition as it is. Conditions are timed by the
// engine's clock, not the agent's report time, so a skewed agent clock does
// not shorten a hold.
func (e *Engine) ObserveSamples(samples []fleet.Sample) {
	if len(samples) == 0 {
		return
	}
	now := e.now()
	e.mu.Lock()
	defer e.unlock()
	if len(e.thresholds) == 0 {
		return
	}
	for i := range samples {
		s := &samples[i]
		if s.Device == "" || len(s.Metrics) == 0 {
			continue
		}
		for j := range e.thresholds {
			t := &e.thresholds[j]
			v, ok := s.Metrics[t.name]
			if !ok || math.IsNaN(v) || math.IsInf(v, 0) {
				continue
			}
			rule, ok := t.rule(s.Kind)
			if !ok {
				continue
			}
			e.keyBuf = append(append(append(append(e.keyBuf[:0], thresholdPrefix...), s.Device...), '/'), t.name...)
			c := e.conds[string(e.keyBuf)] // no allocation for the lookup
			active := rule.past(v)
			if c == nil {
				if !active {
					continue
				}
				c = &cond{rule: rule}
				e.conds[string(e.keyBuf)] = c
			}
			if active {
				c.tmpl = Alarm{
					Key: string(e.keyBuf), Source: SourceThreshold, Type: t.name,
					Device: s.Device, Agent: s.Agent, Site: s.Site, District: s.District,
					Criticality: e.criticality(s.Agent, s.Device), Detail: thresholdDetail(t.name, v, c.rule), Args: thresholdArgs(t.name, v, c.rule),
				}
			}
			e.update(c, active, now)
		}
	}
}

// thresholdDetail says what is wrong: "fps 3.2 below 5".
func thresholdDetail(metric string, v float64, r Rule) string {
	dir := " below "
	if r.Above {
		dir = " above "
	}
	return metric + " " + fmtValue(v) + dir + fmtValue(r.Limit)
}

// thresholdArgs are thresholdDetail's figures: metric, value, limit and
// dir (above or below).
func thresholdArgs(metric string, v float64, r Rule) map[string]string {
	dir := "below"
	if r.Above {
		dir = "above"
	}
	return map[string]string{"metric": metric, "value": fmtValue(v), "limit": fmtValue(r.Limit), "dir": dir}
}

// fmtValue writes v with at most two decimals and no trailing zeros.
func fmtValue(v float64) string {
	return strconv.FormatFloat(math.Round(v*100)/100, 'f', -1, 64)
}

// criticality is a device's, as its agent's last change said (0 unknown).
func (e *Engine) criticality(agent, device string) int {
	if st := e.sites[agent]; st != nil {
		return st.devices[device].crit
	}
	return 0
}
