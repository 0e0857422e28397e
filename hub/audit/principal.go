package audit

import "github.com/citywatch/citywatch/hub/auth"

// By starts a record of what p did: actor, role, session and address
// filled from the principal the gate authenticated. A nil principal (a
// public route) is recorded as "anonymous".
func By(p *auth.Principal, action, object string, outcome Outcome, detail string) Record {
	r := Record{Actor: "anonymous", Action: action, Object: object, Outcome: outcome, Detail: detail}
	if p != nil {
		r.Actor, r.Role, r.Session, r.Remote = p.Name, string(p.Role), p.Session, p.Remote
	}
	return r
}
