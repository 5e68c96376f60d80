package auth

// Permission is an action a route performs. Each route declares exactly one;
// the role table below is the only place that decides who may do it, so a
// new route cannot forget the viewer rule or the admin-only rule.
type Permission string

// Permissions. Reading is one permission on purpose: every role of an
// organisation may read all of that organisation's data (the organisation
// boundary, not the role, protects reads). Writes are split by what the
// issue distinguishes: shifts and clients (schedulers), pricing, settings and
// users (admins only).
const (
	PermRead          Permission = "read"           // any GET of the organisation's data
	PermWriteShifts   Permission = "shifts:write"   // schedule, update, complete, cancel shifts
	PermWriteClients  Permission = "clients:write"  // create and change clients
	PermWritePricing  Permission = "pricing:write"  // PUT /pricing
	PermWriteSettings Permission = "settings:write" // PUT /settings
	PermManageUsers   Permission = "users:write"    // create users, list users
)

// grants is the one role table. Anything not listed is denied.
var grants = map[string]map[Permission]bool{
	RoleAdmin: {
		PermRead: true, PermWriteShifts: true, PermWriteClients: true,
		PermWritePricing: true, PermWriteSettings: true, PermManageUsers: true,
	},
	RoleScheduler: {PermRead: true, PermWriteShifts: true, PermWriteClients: true},
	RoleViewer:    {PermRead: true},
}

// Can reports whether role may perform perm. Unknown roles and unknown
// permissions are denied.
func Can(role string, perm Permission) bool {
	return grants[role][perm]
}

// ValidRole reports whether role is one of the known roles.
func ValidRole(role string) bool {
	_, ok := grants[role]
	return ok
}

// Roles returns the known roles, most privileged first.
func Roles() []string { return []string{RoleAdmin, RoleScheduler, RoleViewer} }

// Permissions returns every permission, for tables in tests and docs.
func Permissions() []Permission {
	return []Permission{PermRead, PermWriteShifts, PermWriteClients, PermWritePricing, PermWriteSettings, PermManageUsers}
}
