package outbox

import (
	"context"

	"github.com/socialrx/socialrx/mapping"
)

// nopStore's Capacities: nothing stored, nothing open.

func (nopStore) GetCapacity(_ context.Context, id string) (mapping.Capacity, bool, error) {
	return mapping.Capacity{ServiceID: id}, false, nil
}
func (nopStore) SetCapacity(_ context.Context, c mapping.Capacity, _ bool) (mapping.Capacity, bool, error) {
	return c, true, nil
}
func (nopStore) ListCapacities(context.Context) (map[string]mapping.Capacity, error) { return nil, nil }
func (nopStore) RouteCapacities(context.Context, []string) (map[string]mapping.Capacity, error) {
	return nil, nil
}
