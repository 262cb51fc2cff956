package streams

import (
	"context"
	"errors"
	"fmt"
	"iter"

	"github.com/capacityd/capacityd/capacity"
	"github.com/nats-io/nuid"
)

// PoolEvents adapts a Store to capacity.EventStore: it encodes and decodes
// domain events and translates the store's errors into the domain's.
type PoolEvents struct {
	store *Store
}

// NewPoolEvents returns the domain view of store.
func NewPoolEvents(store *Store) *PoolEvents {
	return &PoolEvents{store: store}
}

// Store returns the underlying store.
func (p *PoolEvents) Store() *Store { return p.store }

// Append implements capacity.EventStore.
func (p *PoolEvents) Append(ctx context.Context, pool string, expectedSeq uint64, events []capacity.Event) (uint64, error) {
	batch := make([]Event, len(events))
	prefix := nuid.Next() // one random prefix per append; the index makes each id unique
	for i, e := range events {
		data, err := capacity.Encode(e)
		if err != nil {
			return 0, fmt.Errorf("encoding %s: %w", e.EventType(), err)
		}
		batch[i] = Event{Type: e.EventType(), Version: capacity.SchemaVersion, ID: fmt.Sprintf("%s-%d", prefix, i), Data: data}
	}
	lastSeq, err := p.store.Append(ctx, pool, expectedSeq, batch)
	switch {
	case err == nil:
		return lastSeq, nil
	case errors.Is(err, ErrConflict):
		return 0, fmt.Errorf("%w: %w", capacity.ErrStaleSequence, err)
	case errors.Is(err, ErrInvalid), errors.Is(err, ErrBatchTooLarge):
		return 0, err
	}
	return 0, fmt.Errorf("%w: %w", capacity.ErrUnknownOutcome, err)
}

// Read implements capacity.EventStore. An event that cannot be decoded ends
// the sequence with an error: a pool's own history must be whole.
func (p *PoolEvents) Read(ctx context.Context, pool string, afterSeq uint64) iter.Seq2[capacity.Recorded, error] {
	return decodeAll(p.store.Read(ctx, pool, afterSeq))
}

// Log yields every event of the stream from fromSeq on, decoded, with the
// pool it belongs to. Undecodable events are yielded as errors that wrap
// the capacity.EINVALID error, so a projection can skip them and go on.
func (p *PoolEvents) Log(ctx context.Context, fromSeq uint64) iter.Seq2[PoolEvent, error] {
	return func(yield func(PoolEvent, error) bool) {
		for rec, err := range p.store.Log(ctx, fromSeq) {
			if err != nil {
				yield(PoolEvent{}, err)
				return
			}
			e, err := capacity.Decode(rec.Type, rec.Version, rec.Data)
			if err != nil {
				err = fmt.Errorf("seq %d: %w", rec.Seq, err)
			}
			if !yield(PoolEvent{Pool: rec.Pool, Recorded: capacity.Recorded{Seq: rec.Seq, Stored: rec.Time, Event: e}}, err) {
				return
			}
		}
	}
}

// PoolEvent is a decoded event with the pool it belongs to.
type PoolEvent struct {
	Pool string
	capacity.Recorded
}

// LastSeq implements capacity.EventStore.
func (p *PoolEvents) LastSeq(ctx context.Context, pool string) (uint64, error) {
	return p.store.LastSeq(ctx, pool)
}

func decodeAll(records iter.Seq2[Recorded, error]) iter.Seq2[capacity.Recorded, error] {
	return func(yield func(capacity.Recorded, error) bool) {
		for rec, err := range records {
			if err != nil {
				yield(capacity.Recorded{}, err)
				return
			}
			e, err := capacity.Decode(rec.Type, rec.Version, rec.Data)
			if err != nil {
				yield(capacity.Recorded{}, fmt.Errorf("pool %s seq %d: %w", rec.Pool, rec.Seq, err))
				return
			}
			if !yield(capacity.Recorded{Seq: rec.Seq, Stored: rec.Time, Event: e}, nil) {
				return
			}
		}
	}
}
