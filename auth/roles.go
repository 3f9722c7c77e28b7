package auth

import "strconv"

// RoleWarning says what in this policy stops anybody from meeting role as
// a requirement of requiredBy (for example "weather.set_units", the method
// of an agent that declared rpc.AllowRoles("admin")), or returns "" when
// some enabled user holds the role. The warnings read:
//
//	role "admin" (required by weather.set_units) grants no capability in auth.json: it is not defined in "roles", so nobody can hold it
//	role "admin" (required by weather.set_units) grants no capability in auth.json and nobody holds it
//	role "admin" (required by weather.set_units) is held by nobody in auth.json
//
// A closed policy gives no warning: it refuses everything anyway.
func (p *Policy) RoleWarning(role, requiredBy string) string {
	if p.closed {
		return ""
	}
	head := "role " + strconv.Quote(role) + " (required by " + requiredBy + ") "
	idx, ok := p.roleIndex[role]
	if !ok {
		return head + `grants no capability in auth.json: it is not defined in "roles", so nobody can hold it`
	}
	for _, u := range p.users {
		if u.enabled && u.roles.has(idx) {
			return ""
		}
	}
	if len(p.roleItems[role]) == 0 {
		return head + "grants no capability in auth.json and nobody holds it"
	}
	return head + "is held by nobody in auth.json"
}
