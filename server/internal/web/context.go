package web

import (
	"context"

	"github.com/socialrx/socialrx/config"
	"github.com/socialrx/socialrx/referral"
)

type ctxKey int

const (
	keyRequestID ctxKey = iota + 1
	keyClient
	keyLogNote
	keyClientRequestID
)

// WithClientRequestID returns ctx carrying the X-Request-ID the client sent ("" when none or malformed).
func WithClientRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, keyClientRequestID, id)
}

// ClientRequestID is the X-Request-ID the client sent, kept beside the server's request id.
func ClientRequestID(ctx context.Context) string {
	id, _ := ctx.Value(keyClientRequestID).(string)
	return id
}

// LogNote is what the request's log line says beyond what the router knows: the client that turned out to
// be calling (bearer token, inbox or console session). The server puts one in each request's context
// (WithLogNote) before routing; WithClient fills it in, wherever in the handlers the client is found.
type LogNote struct {
	ClientID string
}

// WithLogNote returns ctx carrying n.
func WithLogNote(ctx context.Context, n *LogNote) context.Context {
	return context.WithValue(ctx, keyLogNote, n)
}

// NoteClient notes the client id for the request's log line (a client that was refused, say).
func NoteClient(ctx context.Context, id string) {
	if n, ok := ctx.Value(keyLogNote).(*LogNote); ok && n != nil {
		n.ClientID = id
	}
}

// WithClient returns ctx carrying the authenticated client (and notes it for the request's log line and as
// the actor of the request's audit records).
func WithClient(ctx context.Context, c config.Client) context.Context {
	NoteClient(ctx, c.ID)
	referral.SetActor(ctx, c.ID, string(c.Role))
	return context.WithValue(ctx, keyClient, c)
}

// Client is the authenticated client of the request (the zero Client on public routes).
func Client(ctx context.Context) config.Client {
	c, _ := ctx.Value(keyClient).(config.Client)
	return c
}

// WithRequestID returns ctx carrying the request's correlation id.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, keyRequestID, id)
}

// RequestID is the request's correlation id (in X-Request-ID, OperationOutcome.id and every log line).
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(keyRequestID).(string)
	return id
}

// Caller is who calls a use case: the authenticated client and the request's correlation id.
func Caller(ctx context.Context) referral.Caller {
	return referral.Caller{Client: Client(ctx), RequestID: RequestID(ctx)}
}
