package pools

import (
	"context"
	"time"

	"github.com/capacityd/capacityd/capacity"
)

// LapsedPools lists, at now, the pools that have a hold past its deadline
// without an Expired event yet; *views.Availability implements it.
type LapsedPools interface {
	LapsedPools(now time.Time) []string
}

// SweepLapsed makes sure every lapsed hold gets its Expired event, also in
// pools that are not loaded here (after a restart, or evicted), until ctx
// ends: every interval it asks lapsed for the pools with holds lapsed for at
// least half an interval and sends each an Expire command. Each entity's own
// timer already expires the holds of the pools it has in memory; capacity
// waits for neither (decisions take the time), but the record, the board
// and the audit trail do. Several instances may sweep the same pool: the
// second Expire finds nothing to write.
func (s *Service) SweepLapsed(ctx context.Context, lapsed LapsedPools, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for _, pool := range lapsed.LapsedPools(s.opts.Now().Add(-interval / 2)) {
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, err := s.Execute(cctx, pool, capacity.Expire{})
			cancel()
			if err != nil && ctx.Err() == nil {
				s.opts.Logger.Warn().Err(err).Str("pool", pool).Msg("sweeping lapsed holds")
			}
		}
	}
}
