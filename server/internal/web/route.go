package web

import "net/http"

// Access says who may use a route.
type Access int

// Access rules.
const (
	// Public routes need no client (discovery, ops, the inbox page, which signs in by itself).
	Public Access = iota + 1
	// AnyClient routes need a known client of any role.
	AnyClient
	// GPOrAdmin routes are for GP and admin clients.
	GPOrAdmin
	// CommunityOnly routes are for community clients.
	CommunityOnly
	// AdminOnly routes are for admin clients.
	AdminOnly
)

// Route is one path of an API: its name (in metrics and logs), who may use it, and one handler per method.
// A GET handler also answers HEAD; any other method is a 405 with Allow, in the API's error format.
type Route struct {
	Path    string
	Name    string
	Access  Access
	Methods map[string]http.HandlerFunc
}
