package pools

// QueuedCommits returns how many units wait for the cross-pool committer.
func (s *Service) QueuedCommits() int { return len(s.committer.in) }

// Pending returns how many callers wait for the pool's writer to take
// their command (0 when the pool is not in memory).
func (s *Service) Pending(pool string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.entities[pool]; e != nil {
		e.mu.Lock()
		defer e.mu.Unlock()
		return len(e.queue)
	}
	return 0
}
