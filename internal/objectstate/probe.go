package objectstate

import "context"

// Probe reads one row that is never written, to learn whether Table storage answers: nil when it does
// (an absent row or an absent table is an answer), the storage error when it does not. `handler status`
// uses it to name a failing Table service.
func (s *Store) Probe(ctx context.Context) error {
	_, err := s.b.get(ctx, "probe", []string{"probe"})
	return err
}
