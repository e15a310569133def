package server_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync"
	"testing"
	"time"

	"github.com/socialrx/socialrx/config"
	"github.com/socialrx/socialrx/server"
	"github.com/socialrx/socialrx/server/console"
)

// memSessions stands in for the server-side console sessions until the inbox's sessions (branch i8-inbox)
// land on main: an admin token opens a session kept in memory.
type memSessions struct {
	cfg *config.Config
	mu  sync.Mutex
	m   map[string]console.Session
}

func consoleSessions(_ *testing.T, o *server.Options) console.Sessions {
	return &memSessions{cfg: o.Config, m: map[string]console.Session{}}
}

func (s *memSessions) SignIn(_ context.Context, token, _ string) (console.Session, error) {
	cl, ok := s.cfg.Authenticate(token)
	if !ok || cl.Role != config.RoleAdmin {
		return console.Session{}, console.ErrSignInRefused
	}
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	sess := console.Session{ID: hex.EncodeToString(b), Client: cl, Expires: time.Now().Add(8 * time.Hour)}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[sess.ID] = sess
	return sess, nil
}

func (s *memSessions) Session(_ context.Context, id string) (console.Session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.m[id]
	if !ok {
		return console.Session{}, console.ErrNoSession
	}
	return sess, nil
}

func (s *memSessions) SignOut(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, id)
	return nil
}
