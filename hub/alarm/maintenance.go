package alarm

import (
	"time"

	"github.com/citywatch/citywatch/hub/maintenance"
)

// maintain shelves r until the end of the latest maintenance window
// covering it (hub/maintenance), and says which, so the raise is recorded
// but notifies nobody and does not escalate, yet the trail shows what
// happened.
func (e *Engine) maintain(r *record, now time.Time) string {
	var name string
	subject := maintenance.Subject{Device: r.a.Device, Agent: r.a.Agent, Site: r.a.Site, District: r.a.District}
	for _, w := range e.windows.Windows() {
		if until, ok := w.Covers(subject, now); ok && until.After(r.a.ShelvedUntil) {
			r.a.ShelvedUntil, name = until, w.Name
		}
	}
	if name == "" {
		return ""
	}
	return "in maintenance window " + name
}
