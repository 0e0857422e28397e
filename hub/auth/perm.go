// Package auth is the hub's access policy and the one gate every HTTP
// request passes: who the caller is (a Principal, found by an Authenticator
// another package implements), what each role may do (fixed sets of
// Permissions), which part of the city an account may see (Scope), and
// which permission each route needs (Route). Router builds the hub's
// handler from the routes every domain declares, so a route cannot exist
// without a permission, and the gate checks host, origin, CSRF token,
// authentication and permission before any handler runs. It knows nothing
// of accounts, passwords or storage.
package auth

import (
	"fmt"
	"slices"
	"strings"
)

// Permission is one thing a caller may do. Routes name the permission they
// need; roles are fixed sets of permissions.
type Permission string

// Permissions. docs/security.md shows them as a table against the roles; a
// test keeps the two in step.
const (
	// Public marks routes anyone may call: the console's files, /healthz,
	// logging in. It is never granted; the gate skips its checks.
	Public Permission = "public"
	// Self is every signed-in account's own business: who am I, log out,
	// change my password, enrol a second factor. A session that must change
	// its password or enrol TOTP first can use nothing else.
	Self Permission = "self"

	StatusRead Permission = "status.read" // devices, agents, summary, history, the event stream

	AlarmRead   Permission = "alarm.read"
	AlarmAck    Permission = "alarm.ack"
	AlarmAssign Permission = "alarm.assign"
	AlarmShelve Permission = "alarm.shelve" // shelve and unshelve
	AlarmClear  Permission = "alarm.clear"

	// ShiftHandover: the shift report, writing a handover and accepting one.
	ShiftHandover Permission = "shift.handover"

	MaintenanceManage Permission = "maintenance.manage" // maintenance windows
	RulesManage       Permission = "rules.manage"       // alarm rules

	LiveView    Permission = "live.view"    // watch a camera
	LiveLink    Permission = "live.link"    // make a viewing link for another WHEP player
	LiveMonitor Permission = "live.monitor" // see who watches what now

	DeviceProbe Permission = "device.probe" // ask an agent to probe now
	WorkManage  Permission = "work.manage"  // work on faults: accept, start, hold, fix, note work orders
	// WorkDispatch gives work orders to crews and people, and cancels them.
	WorkDispatch Permission = "work.dispatch"

	ReportRead   Permission = "report.read"
	ReportExport Permission = "report.export"

	AuditRead Permission = "audit.read"

	AccountManage Permission = "account.manage" // accounts, roles, scopes, lockouts
	TokenManage   Permission = "token.manage"   // API tokens
	AgentManage   Permission = "agent.manage"   // agent credentials: enrol, revoke

	ConfigManage Permission = "config.manage"
	MetricsRead  Permission = "metrics.read" // /metrics
)

// Permissions lists every grantable permission (not Public), in the order
// docs/security.md shows them.
var Permissions = []Permission{
	Self, StatusRead,
	AlarmRead, AlarmAck, AlarmAssign, AlarmShelve, AlarmClear, ShiftHandover, MaintenanceManage, RulesManage,
	LiveView, LiveLink, LiveMonitor, DeviceProbe, WorkManage, WorkDispatch, ReportRead, ReportExport,
	AuditRead, AccountManage, TokenManage, AgentManage, ConfigManage, MetricsRead,
}

// Role is a named, fixed set of permissions.
type Role string

// Roles. The security administrator manages who may do what; the auditor
// reads what everyone did; no role does both (GB/T 22239 level 3 asks for
// separate system, security and audit administrators).
const (
	Operator      Role = "operator"
	Supervisor    Role = "supervisor"
	Maintainer    Role = "maintainer"
	Analyst       Role = "analyst"
	Auditor       Role = "auditor"
	SecurityAdmin Role = "security_admin"
	Admin         Role = "admin"
)

// Roles lists every role, least to most privileged in operations.
var Roles = []Role{Operator, Supervisor, Maintainer, Analyst, Auditor, SecurityAdmin, Admin}

var (
	operator   = []Permission{Self, StatusRead, AlarmRead, AlarmAck, AlarmAssign, AlarmShelve, ShiftHandover, LiveView}
	supervisor = append(slices.Clone(operator), AlarmClear, MaintenanceManage, RulesManage, LiveLink, LiveMonitor, ReportRead, WorkManage, WorkDispatch)

	rolePerms = map[Role][]Permission{
		Operator:   operator,
		Supervisor: supervisor,
		Maintainer: {Self, StatusRead, AlarmRead, DeviceProbe, WorkManage},
		Analyst:    {Self, StatusRead, AlarmRead, ReportRead, ReportExport},
		Auditor:    {Self, AuditRead},
		// Manages people, tokens and agents; sees no video, no alarms and
		// no audit trail.
		SecurityAdmin: {Self, AccountManage, TokenManage, AgentManage},
		// Runs the system: everything operational and its configuration,
		// but neither accounts nor the audit trail.
		Admin: append(slices.Clone(supervisor), DeviceProbe, ReportExport, ConfigManage, MetricsRead),
	}
)

// Grantable are the permissions an account may hold beyond its role (a
// maintainer granted live video). Account, token and agent administration
// and the audit trail come only with their roles, so a grant can never put
// administering accounts and reading the audit trail in one hand.
var Grantable = []Permission{StatusRead, AlarmRead, LiveView, LiveLink, DeviceProbe, ReportRead, ReportExport, MetricsRead}

// Valid reports whether r is a known role.
func (r Role) Valid() bool { _, ok := rolePerms[r]; return ok }

// Permissions returns the role's permissions.
func (r Role) Permissions() []Permission { return slices.Clone(rolePerms[r]) }

// ParseRole reads a role name.
func ParseRole(s string) (Role, error) {
	r := Role(s)
	if !r.Valid() {
		return "", fmt.Errorf("role %q is not one of %s", clip(s), joinRoles())
	}
	return r, nil
}

func joinRoles() string {
	s := make([]string, len(Roles))
	for i, r := range Roles {
		s[i] = string(r)
	}
	return strings.Join(s, ", ")
}

// CheckGrants reports grants that are unknown or not grantable.
func CheckGrants(grants []Permission) error {
	for _, g := range grants {
		if !slices.Contains(Grantable, g) {
			return fmt.Errorf("permission %q cannot be granted; grantable: %s", clip(string(g)), joinPerms(Grantable))
		}
	}
	return nil
}

func joinPerms(ps []Permission) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = string(p)
	}
	return strings.Join(s, ", ")
}

// Set is a set of permissions.
type Set map[Permission]struct{}

// NewSet returns the permissions of role plus grants.
func NewSet(role Role, grants []Permission) Set {
	s := Set{}
	for _, p := range rolePerms[role] {
		s[p] = struct{}{}
	}
	for _, g := range grants {
		if slices.Contains(Grantable, g) {
			s[g] = struct{}{}
		}
	}
	return s
}

// Has reports whether p is in the set.
func (s Set) Has(p Permission) bool { _, ok := s[p]; return ok }

// List returns the set in the order of Permissions.
func (s Set) List() []Permission {
	var out []Permission
	for _, p := range Permissions {
		if s.Has(p) {
			out = append(out, p)
		}
	}
	return out
}

// clip shortens what a caller sent before it is echoed in an error.
func clip(s string) string {
	if len(s) <= 64 {
		return s
	}
	return s[:64] + "…"
}
