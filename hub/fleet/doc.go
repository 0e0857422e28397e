// Package fleet is the hub's single owner of agent and device state. A
// Registry takes messages that already passed wire.Decode, judges them
// against what it knows (inventory, sequence numbers, the agent's liveness),
// keeps every agent and device with its status, and reports what changed as
// Changes in order; one failure upstream is one Change, not hundreds.
//
// Semantics, where the protocol leaves room:
//
//   - Sequence. Per agent the registry keeps Boot, Conn and a window of the
//     seqs it accepted in that boot (seq.go). An older Boot is a replay; a
//     newer Boot starts a new incarnation. Within a boot a seq already in
//     the window is a replay; one more than maxSeqJump past the highest is
//     invalid; one below the highest that the window lacks is a message the
//     agent kept through an outage and sent late (its own seq and time):
//     accepted, counted in Late, taking back the gap it had left. A late
//     health report gives samples and leaves the present alone; a late
//     status event becomes a ChangeLate, history at the time it happened.
//     A message below the highest seq but stamped after every accepted one
//     is the present (a seq had run ahead), and a birth or inventory below
//     the highest is stale. Retained messages (catch-up after the hub
//     (re)subscribes) are judged per channel, never counted as gaps. A jump
//     adds the missed count to Gaps; the first message the hub sees of a
//     boot counts no gap, nor does the first live one after retained ones,
//     because the hub may simply not have been listening. A Last Will (Seq
//     0) is judged by (Boot, Conn): one from an older connection than the
//     current birth is a stale replay. No single message locks an agent
//     out: live messages refused as replays for two health intervals, in a
//     rising sequence of one boot, make the registry adopt that boot and
//     seq (Resyncs).
//   - Liveness. A birth makes the agent online; a will makes it offline with
//     reason "will", a clean state "offline" with reason "shutdown", and
//     MissedHeartbeats intervals without any message (Sweep) with reason
//     "heartbeat". Any other message received live (not retained) proves the
//     agent alive: if it was offline or unknown for any reason, it comes back
//     online. Retained inventory says nothing about liveness now, so it never
//     revives an agent.
//   - Devices follow their agent: while it is online a device shows the
//     agent's last report (unknown before the first); while it is offline
//     every device is unreachable (reason agent_offline, Reported keeps the
//     agent's last word); while it is unknown so are its devices. An agent's
//     transition is ONE Change{Kind: ChangeAgent} whose Affected lists the
//     devices whose status changed with it; a message that revives an agent
//     and reports on devices yields that one Change, not one per device.
//   - Since is when the hub's view changed, except that a device taking the
//     status its agent reported uses the agent's own since when that lies
//     between the previous change and now.
//   - Inventory replaces the agent's device set. A device id belongs to one
//     agent hub-wide: an inventory naming another agent's device is rejected
//     whole (a device moves only after its old agent's inventory drops it).
//     When the set or any device attribute changes the registry emits one
//     Change{Kind: ChangeInventory} with Affected (added or changed devices)
//     and Removed (ids gone); removed devices disappear from every read.
//   - Health and events must name devices of the sender's inventory; one
//     unknown line rejects the whole message before anything is applied.
//     Only a status change is a Change; a new reason or detail under the
//     same status just updates the device. A health triggered flag that
//     differs from the hub's view (a lost event) emits a trigger Change;
//     triggered/restored events always do, since each is a fact at the
//     sensor.
//   - A failed live stream (SetStreamFault, from the live video relay) shows
//     a camera the agent reports online as degraded, with the stream's
//     reason, until a later stream succeeds (ClearStreamFault): reachable,
//     but no picture. What the agent reports otherwise comes first.
//   - The heartbeat backstop is suspended while Options.Live reports false:
//     when the hub's own broker link is down, silence says nothing about the
//     agents, and after the link returns they get a full grace period.
//   - Queries (QueryDevices) are answered from indexes kept as statuses
//     and inventories change: devices in id order, and per status, kind,
//     district and site the set of their positions (a bitmap or a sorted
//     list, whichever is smaller). A filter intersects those sets, Total is
//     a population count, and a page is found by id (After, keyset) or by
//     counting (Offset), so a page of 100 costs that page at any fleet
//     size. Search and Since are not indexed: they look at each device the
//     other fields leave (a search through one string of every device's
//     lower-cased text, built by the first search after the searched text
//     or the order changed, and the only copy of it). Adding or removing a
//     device moves positions, so the next read rebuilds the index by
//     merging.
//   - Memory. A city keeps a record of every device, so the registry keeps
//     it compact (registry.go: 112 bytes, values devices share shared or
//     interned, times as Unix nanoseconds, metric values in one slab per
//     agent, devices found by id through a table of pointers) and makes a
//     Device only for a read or a Change; device times are shown in the
//     hub clock's location.
//
// Every method is safe for concurrent use; one mutex guards all state, and
// OnChange runs after it is released.
package fleet
