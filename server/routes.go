package server

import (
	"context"
	"net/http"
	"time"

	"github.com/gorilla/mux"
)

// routes registers every route on the root router with full paths (gorilla/mux answers 404 instead of 405
// under PathPrefix subrouters: DESIGN.md trap).
func (s *Server) routes() {
	s.router = mux.NewRouter()
	s.router.NotFoundHandler = http.HandlerFunc(s.notFound)
	s.router.MethodNotAllowedHandler = http.HandlerFunc(s.notFound)

	// Ops: public.
	s.handle("/healthz", "healthz", public, map[string]http.HandlerFunc{http.MethodGet: s.healthz})
	s.handle("/readyz", "readyz", public, map[string]http.HandlerFunc{http.MethodGet: s.readyz})
	s.handle("/metrics", "metrics", public, map[string]http.HandlerFunc{http.MethodGet: s.metricsHandler().ServeHTTP})

	// FHIR: discovery is public, everything else needs a client.
	s.handle("/fhir/metadata", "fhir_metadata", public, map[string]http.HandlerFunc{http.MethodGet: s.metadata})
	// SMART Backend Services (smart.go): discovery and the token endpoint are public; the token endpoint
	// authenticates the client by its signed assertion.
	s.handle("/fhir/.well-known/smart-configuration", "smart_configuration", public, map[string]http.HandlerFunc{
		http.MethodGet: s.smartConfiguration})
	s.handle(tokenPath, "oauth_token", public, map[string]http.HandlerFunc{http.MethodPost: s.token})
	s.handle("/fhir", "fhir_transaction", gpOrAdmin, map[string]http.HandlerFunc{http.MethodPost: s.transaction})
	s.handle("/fhir/ServiceRequest", "fhir_servicerequest_type", anyClient, map[string]http.HandlerFunc{
		http.MethodPost: s.createServiceRequest, http.MethodGet: s.search("ServiceRequest")})
	s.handle("/fhir/ServiceRequest/{id}", "fhir_servicerequest", anyClient, map[string]http.HandlerFunc{
		http.MethodPut: s.updateServiceRequest, http.MethodPatch: s.patchServiceRequest, // GP cancellation (issue 4)
		http.MethodGet: s.readServiceRequest})
	s.handle("/fhir/Task", "fhir_task_type", anyClient, map[string]http.HandlerFunc{http.MethodGet: s.search("Task")})
	s.handle("/fhir/Task/{id}", "fhir_task", anyClient, map[string]http.HandlerFunc{
		http.MethodPut: s.updateTask, http.MethodPatch: s.patchTask, // Task updates, If-Match required (issue 4)
		http.MethodGet: s.readTask})
	// Subscriptions (R4 rest-hook, backport notifications): subscription.go.
	s.handle("/fhir/Subscription", "fhir_subscription_type", gpOrAdmin, map[string]http.HandlerFunc{http.MethodPost: s.createSubscription})
	s.handle("/fhir/Subscription/{id}", "fhir_subscription", gpOrAdmin, map[string]http.HandlerFunc{
		http.MethodGet: s.readSubscription, http.MethodDelete: s.deleteSubscription})
	s.handle("/fhir/Subscription/{id}/$status", "fhir_subscription_status", gpOrAdmin, map[string]http.HandlerFunc{http.MethodGet: s.subscriptionStatus})

	// Admin API: the same code path as the `socialrx outbox` CLI (outbox.Operator).
	s.handle("/admin/v1/messages", "admin_messages", adminOnly, map[string]http.HandlerFunc{http.MethodGet: s.adminListMessages})
	s.handle("/admin/v1/messages/{id}", "admin_message", adminOnly, map[string]http.HandlerFunc{http.MethodGet: s.adminShowMessage})
	s.handle("/admin/v1/messages/{id}/replay", "admin_message_replay", adminOnly, map[string]http.HandlerFunc{http.MethodPost: s.adminReplayOne})
	s.handle("/admin/v1/replay", "admin_replay", adminOnly, map[string]http.HandlerFunc{http.MethodPost: s.adminReplay})
	s.handle("/admin/v1/referrals/{id}/timeline", "admin_timeline", adminOnly, map[string]http.HandlerFunc{http.MethodGet: s.adminTimeline})

	// Community API (issue 4): JSON, community clients only, scoped to the client's service.
	s.handle("/community/v1/referrals", "community_referrals", communityOnly, map[string]http.HandlerFunc{
		http.MethodGet: s.communityList})
	s.handle("/community/v1/referrals/{id}", "community_referral", communityOnly, map[string]http.HandlerFunc{
		http.MethodGet: s.communityGet})
	s.handle("/community/v1/referrals/{id}/status", "community_referral_status", communityOnly, map[string]http.HandlerFunc{
		http.MethodPost: s.communityStatus})

	// Community inbox page (DESIGN.md): HTML for groups with no IT; signs in with a cookie, not a bearer
	// header, so the routes are public here and inbox.go authenticates every request itself.
	s.handle("/inbox", "inbox_bare", public, map[string]http.HandlerFunc{http.MethodGet: s.inboxBare})
	s.handle("/inbox/", "inbox", public, map[string]http.HandlerFunc{http.MethodGet: s.inboxHome})
	s.handle("/inbox/login", "inbox_login", public, map[string]http.HandlerFunc{http.MethodPost: s.inboxLogin})
	s.handle("/inbox/logout", "inbox_logout", public, map[string]http.HandlerFunc{http.MethodPost: s.inboxLogout})
	s.handle("/inbox/referrals/{id}", "inbox_referral", public, map[string]http.HandlerFunc{http.MethodGet: s.inboxShow})
	s.handle("/inbox/referrals/{id}/status", "inbox_referral_status", public, map[string]http.HandlerFunc{
		http.MethodPost: s.inboxStatus})
}

// healthz says the process is alive.
func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	s.writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// readyz says the process can serve: the database answers and the dispatcher runs.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.store.Ping(ctx); err != nil {
		s.log.Warn("not ready: database", "err", err)
		w.Header().Set("Retry-After", "5")
		s.writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "reason": "database"})
		return
	}
	if s.ready != nil {
		if err := s.ready(ctx); err != nil {
			w.Header().Set("Retry-After", "5")
			s.writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "reason": err.Error()})
			return
		}
	}
	s.writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}
