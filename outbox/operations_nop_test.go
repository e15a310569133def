package outbox

import (
	"context"
	"time"

	"github.com/socialrx/socialrx/mapping"
)

// nopStore's Operations: nothing to discard, nothing paused, nothing counted.

func (nopStore) DiscardMessages(context.Context, time.Time, DiscardRequest) ([]Message, error) {
	return nil, nil
}
func (nopStore) PauseDestination(_ context.Context, p Pause) (Pause, bool, error) {
	return p, true, nil
}
func (nopStore) ResumeDestination(context.Context, mapping.Destination, time.Time, string) (Resumed, error) {
	return Resumed{}, ErrNotFound
}
func (nopStore) ListPauses(context.Context) ([]Pause, error)                    { return nil, nil }
func (nopStore) CountByDestination(context.Context) ([]DestinationCount, error) { return nil, nil }
func (nopStore) CountDelivered(context.Context, time.Time) (int, error)         { return 0, nil }
func (nopStore) InboxStats(context.Context) ([]InboxStat, error)                { return nil, nil }
