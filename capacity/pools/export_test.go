package pools

// QueuedCommits returns how many units wait for the cross-pool committer.
func (s *Service) QueuedCommits() int { return len(s.committer.in) }
