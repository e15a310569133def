package server

import (
	"net/http"
	"net/netip"
	"strconv"

	"github.com/socialrx/socialrx/fault"
	"github.com/socialrx/socialrx/server/internal/web"
	"github.com/socialrx/socialrx/server/smart"
)

// admit decides whether a request for route rt may go on to its handler, before any body is read: its
// credentials (401/403; failed authentications are logged at info with the route and client address, never
// the token, and an address that fails too often gets 429), its client's rate (429), the token endpoint's
// rate per address (429), the declared body size (413) and a body slot (429 for the client, 503 for
// everyone). It answers the refusals itself, in the API's format, and returns ok false; otherwise the request
// to pass on (carrying its client) and the function that frees its body slot once the answer is written.
func (s *Server) admit(w http.ResponseWriter, r *http.Request, rt web.Route) (*http.Request, func(), bool) {
	none := func() {}
	refuse := func(err error) (*http.Request, func(), bool) {
		if fault.KindOf(err) == fault.Unauthenticated {
			w.Header().Set("WWW-Authenticate", `Bearer realm="socialrx"`)
		}
		s.limits.holdBack(r.Context(), err) // a 429 comes at the pace asked of the client (Limits.RefusalDelay)
		s.fail(w, r, err)
		return nil, none, false
	}
	addr := s.limits.clientAddr(r)
	key := "addr:" + addrString(addr)
	if rt.Access != web.Public {
		cl, err := s.authenticate(r, rt.Access, rt.Path)
		if fault.KindOf(err) == fault.Unauthenticated {
			if throttled := s.limits.authFailed(addr); throttled != nil {
				s.log.Debug("authentication failed (address throttled)", "request_id", web.RequestID(r.Context()),
					"route", rt.Name, "client_addr", addrString(addr))
				return refuse(throttled)
			}
			s.log.Info("authentication failed", "request_id", web.RequestID(r.Context()), "route", rt.Name,
				"method", r.Method, "client_addr", addrString(addr), "reason", err.Error())
		}
		if err != nil {
			web.NoteClient(r.Context(), cl.ID) // a known client refused this route: its id goes in the log line
			return refuse(err)
		}
		if err := s.limits.allowClient(cl); err != nil {
			s.log.Debug("rate limited", "request_id", web.RequestID(r.Context()), "route", rt.Name, "client", cl.ID)
			return refuse(err)
		}
		r = r.WithContext(web.WithClient(r.Context(), cl))
		key = "client:" + cl.ID
	} else if rt.Path == smart.TokenPath {
		if err := s.limits.allowToken(addr); err != nil {
			return refuse(err)
		}
	}
	if !hasBody(r) {
		return r, none, true
	}
	if r.ContentLength > s.maxBody {
		return refuse(fault.New(fault.TooLarge, web.CodeTooLarge, "",
			"request body is larger than the limit of "+strconv.FormatInt(s.maxBody, 10)+" bytes"))
	}
	release, err := s.limits.enterBody(key)
	if err != nil {
		s.log.Debug("body refused", "request_id", web.RequestID(r.Context()), "route", rt.Name, "err", err)
		return refuse(err)
	}
	size := r.ContentLength
	if size < 0 {
		size = s.maxBody // chunked: it may be as large as the limit
	}
	if err := s.limits.takeBodyBytes(key, size); err != nil { // only a body that would be read spends the budget
		release()
		s.log.Debug("body bytes refused", "request_id", web.RequestID(r.Context()), "route", rt.Name, "err", err)
		return refuse(err)
	}
	return r, release, true
}

// hasBody reports whether a request carries (or may carry) a body that its handler reads.
func hasBody(r *http.Request) bool {
	switch r.Method {
	case http.MethodPost, http.MethodPut, http.MethodPatch:
		return true
	}
	return r.ContentLength > 0
}

// addrString renders a client address for keys and logs ("unknown" when the connection's is unreadable).
func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return "unknown"
	}
	return a.String()
}
