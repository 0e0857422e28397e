package fleet

import "github.com/citywatch/citywatch/wire"

// SetStreamFault records that a live stream of the device failed for
// reason: the camera answers its agent's probes but gives no usable
// picture. While the agent reports the device online, the hub shows it
// degraded with this reason and detail; a status the agent reports itself
// (offline, degraded) takes precedence, and so does an unreachable agent.
// The fault stays until ClearStreamFault, i.e. until a later stream
// succeeds, and a status change it causes is an ordinary device Change.
// Unknown devices are ignored.
func (r *Registry) SetStreamFault(device string, reason wire.Reason, detail string) {
	r.setFault(device, &reported{reason: reason, detail: detail})
}

// ClearStreamFault forgets the device's stream fault, if any, because a
// stream of it succeeded.
func (r *Registry) ClearStreamFault(device string) { r.setFault(device, nil) }

func (r *Registry) setFault(id string, f *reported) {
	now := r.opts.Now()
	r.mu.Lock()
	defer r.unlock()
	d := r.devices.get(id)
	if d == nil || (f == nil && !d.is(faulted)) {
		return
	}
	a := d.agent()
	if f == nil {
		delete(a.faults, d)
	} else {
		if a.faults == nil {
			a.faults = make(map[*device]*reported)
		}
		a.faults[d] = f
	}
	d.set(faulted, f != nil)
	if from, changed := r.refresh(d, now); changed {
		v := r.snapshot(d)
		r.emit(Change{Kind: ChangeDevice, From: from, To: v.Status, Reason: string(v.Reason), Detail: v.Detail, Device: &v}, now)
	}
}
