package projection

import (
	"context"
	"fmt"
)

// Status is a Runner's progress and counters, for metrics and /readyz.
type Status struct {
	Stream        string `json:"stream"`
	Durable       string `json:"durable"`
	Running       bool   `json:"running"`
	Position      uint64 `json:"position"`        // highest stream sequence applied or skipped
	LastSeq       uint64 `json:"last_seq"`        // the stream's last sequence
	Lag           uint64 `json:"lag"`             // LastSeq - Position
	AckFloor      uint64 `json:"ack_floor"`       // the consumer's ack floor, a stream sequence
	NumPending    uint64 `json:"num_pending"`     // messages the consumer has not delivered yet
	NumAckPending int    `json:"num_ack_pending"` // delivered, not acknowledged
	Applied       uint64 `json:"applied"`         // events decoded and handed to the handler (a commit may hold several)
	Poison        uint64 `json:"poison"`          // undecodable messages skipped
	Redelivered   uint64 `json:"redelivered"`     // messages delivered more than once
	Retries       uint64 `json:"retries"`         // handler failures retried
	Restarts      uint64 `json:"restarts"`        // times the consumer was recreated after an error

	// StartSeq is the first sequence delivered at start: 1 for a rebuild,
	// a loaded checkpoint's sequence + 1 otherwise. ReadyAt is the
	// stream's last sequence at start: the models are CaughtUp once their
	// position reaches it (both 0 until the runner has started).
	StartSeq   uint64            `json:"start_seq"`
	ReadyAt    uint64            `json:"ready_at"`
	CaughtUp   bool              `json:"caught_up"`
	Checkpoint *CheckpointStatus `json:"checkpoint,omitempty"` // nil without checkpoints
}

// CheckpointStatus is what a Runner did with checkpoints.
type CheckpointStatus struct {
	Bucket    string `json:"bucket"`
	LoadedSeq uint64 `json:"loaded_seq"`         // the checkpoint loaded at start, 0 if none
	Fallback  string `json:"fallback,omitempty"` // why none was loaded: the models rebuilt from sequence 1
	SavedSeq  uint64 `json:"saved_seq"`          // the last checkpoint this runner stored
	Failures  uint64 `json:"failures"`           // checkpoints not encoded or not stored
}

// CaughtUp reports whether the models have reached the stream's last
// sequence as of the runner's start.
func (r *Runner) CaughtUp() bool {
	return r.started.Load() && r.position.Load() >= r.target.Load()
}

// ReadyAt returns the stream's last sequence as of the runner's start and
// whether the runner has started (and so knows it).
func (r *Runner) ReadyAt() (uint64, bool) {
	return r.target.Load(), r.started.Load()
}

// Status returns the Runner's progress: the stream's last sequence, the
// consumer's view and the runner's counters. When the consumer has nothing
// pending or unacknowledged and delivered nothing beyond the position, every
// message up to the stream's last sequence has been seen, and the position
// moves there (a tail of deleted messages would otherwise show as lag).
func (r *Runner) Status(ctx context.Context) (Status, error) {
	st := r.counters()
	ctx, cancel := context.WithTimeout(ctx, r.opts.timeout)
	defer cancel()
	// Stream first, consumer second: a consumer with nothing pending after
	// the stream was at LastSeq has delivered everything up to LastSeq.
	stream, err := r.js.Stream(ctx, r.stream)
	if err != nil {
		return st, fmt.Errorf("projection: stream %s: %w", r.stream, err)
	}
	st.LastSeq = stream.CachedInfo().State.LastSeq
	cons, err := stream.Consumer(ctx, r.durable)
	if err == nil {
		ci := cons.CachedInfo()
		st.AckFloor, st.NumPending, st.NumAckPending = ci.AckFloor.Stream, ci.NumPending, ci.NumAckPending
		if st.Running && ci.NumPending == 0 && ci.NumAckPending == 0 && ci.Delivered.Stream <= r.Position() {
			r.advance(st.LastSeq)
		}
	}
	st.Position = r.Position()
	st.CaughtUp = r.CaughtUp()
	if st.LastSeq > st.Position {
		st.Lag = st.LastSeq - st.Position
	}
	if err != nil {
		return st, fmt.Errorf("projection: consumer %s: %w", r.durable, err)
	}
	return st, nil
}

// Lag returns how many stream sequences the position trails the stream's last one.
func (r *Runner) Lag(ctx context.Context) (uint64, error) {
	st, err := r.Status(ctx)
	return st.Lag, err
}

// Counters returns the Status fields the Runner knows without asking the
// server (LastSeq, Lag and the consumer's fields are zero).
func (r *Runner) Counters() Status { return r.counters() }

// counters returns the Status fields the Runner knows without asking the server.
func (r *Runner) counters() Status {
	st := Status{
		Stream: r.stream, Durable: r.durable, Running: r.running.Load(), Position: r.Position(),
		Applied: r.applied.Load(), Poison: r.poison.Load(), Redelivered: r.redelivered.Load(),
		Retries: r.retries.Load(), Restarts: r.restarts.Load(),
		StartSeq: r.startSeq.Load(), ReadyAt: r.target.Load(), CaughtUp: r.CaughtUp(),
	}
	if r.opts.checkpoints != nil {
		cs := &CheckpointStatus{Bucket: r.opts.checkpoints.Bucket(), LoadedSeq: r.loaded.Load(),
			SavedSeq: r.cpSaved.Load(), Failures: r.cpFailures.Load()}
		if why := r.fallback.Load(); why != nil {
			cs.Fallback = *why
		}
		st.Checkpoint = cs
	}
	return st
}
