package server

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/socialrx/socialrx/config"
	"github.com/socialrx/socialrx/fault"
	"github.com/socialrx/socialrx/server/internal/web"
	"github.com/socialrx/socialrx/server/smart"
)

// authenticate checks the bearer token (a directory token, or on the FHIR API a SMART access token whose
// scopes cover the route) and the route's access rule. A client the rule refuses is returned with the error
// (for the log line).
func (s *Server) authenticate(r *http.Request, acc web.Access, path string) (config.Client, error) {
	unauthorized := func(msg string) error { return fault.New(fault.Unauthenticated, "unauthorized", "", msg) }
	forbidden := func(msg string) error { return fault.New(fault.Forbidden, "forbidden", "", msg) }
	h := r.Header.Get("Authorization")
	scheme, token, _ := strings.Cut(h, " ")
	token = strings.TrimSpace(token)
	if h == "" || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return config.Client{}, unauthorized("send Authorization: Bearer <token> of a configured client")
	}
	cl, ok := s.cfg.Authenticate(token)
	if !ok && strings.HasPrefix(token, smart.AccessPrefix) {
		if !isFHIR(path) {
			return config.Client{}, unauthorized("access tokens from " + smart.TokenPath + " are for the FHIR API; use your service's directory token here")
		}
		c, g, err := s.smart.Verify(token)
		if err != nil {
			return config.Client{}, unauthorized(err.Error())
		}
		if res, perm := smart.RequiredScope(path, r.Method); res != "" && !strings.ContainsRune(g.Scopes[res], rune(perm)) {
			return config.Client{}, forbidden(fmt.Sprintf("the access token's scope (%s) does not include system/%s.%c", smart.ScopeString(g.Scopes), res, perm))
		}
		cl, ok = c, true
	}
	if !ok {
		return config.Client{}, unauthorized("unknown bearer token")
	}
	allowed := true
	switch acc {
	case web.GPOrAdmin:
		allowed = cl.Role == config.RoleGP || cl.Role == config.RoleAdmin
	case web.CommunityOnly:
		allowed = cl.Role == config.RoleCommunity
	case web.AdminOnly:
		allowed = cl.Role == config.RoleAdmin
	case web.Public, web.AnyClient:
	}
	if !allowed {
		return cl, forbidden(fmt.Sprintf("a %s client may not use this endpoint", cl.Role))
	}
	return cl, nil
}
