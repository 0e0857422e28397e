package audit

import "time"

// Outcome is how an audited action ended.
type Outcome string

// Outcomes.
const (
	Success Outcome = "success"
	Failure Outcome = "failure" // tried and failed: a wrong password, an alarm in the wrong state
	Denied  Outcome = "denied"  // refused by policy: no permission, locked out, bad origin
)

// Record is one entry of the trail: who did what to which object, from
// where, when, and how it ended. Seq and Hash are set by the log when the
// record is appended.
type Record struct {
	Seq uint64    `json:"seq"`
	At  time.Time `json:"at"`
	// Actor is who acted: an account name, "token:NAME" for an API token,
	// "cli:USER" for the command line on the hub's machine, or "system" for
	// the hub itself. For a failed login it is the name that was tried.
	Actor   string `json:"actor"`
	Role    string `json:"role,omitempty"`
	Session string `json:"session,omitempty"` // login session, token or link id; never a secret
	Remote  string `json:"remote,omitempty"`  // source address; "local" for the command line
	// Action is what was done, dotted: auth.login, auth.logout,
	// auth.lockout, alarm.ack, live.start, live.end, account.create,
	// agent.enroll, audit.export… (docs/security.md lists them)
	Action  string  `json:"action"`
	Object  string  `json:"object,omitempty"` // kind/id: alarm/A-17, camera/cam-01, account/bob
	Outcome Outcome `json:"outcome"`
	Detail  string  `json:"detail,omitempty"` // the note, the reason, figures
	// Hash chains the record to the one before it (hex); see package doc.
	Hash string `json:"hash"`
}
