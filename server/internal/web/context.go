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
)

// WithClient returns ctx carrying the authenticated client.
func WithClient(ctx context.Context, c config.Client) context.Context {
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
