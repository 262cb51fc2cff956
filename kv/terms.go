package kv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/capacityd/capacityd/capacity"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Which region writes a region's pools, and since when, is a term: a KV
// key per region (the region's name) in bucket TermsBucket of every domain
// that has taken part in a change of writer. A term is never mirrored: each
// region keeps the terms it wrote in its own domain, and a reader asks its
// own bucket and every peer domain it can reach (over the leaf link, on
// the JetStream API) and believes the highest epoch. A promotion writes the
// new term in the promoting region's domain; a handover first has the old
// writer write it in its own (it is fenced before the new writer starts),
// so after a handover both domains hold it, and after a takeover the new
// writer's does, where the old one finds it when it can reach it again.
// Not carried in the event stream: the fenced region must learn of the
// term from the new head, whose stream it no longer follows.

// TermsBucket is the bucket of the terms.
const TermsBucket = "capacity_regions"

// Term is one writer's tenure of a region's pools.
type Term struct {
	Region string `json:"region"`
	Writer string `json:"writer"`
	Epoch  uint64 `json:"epoch"`
	// From is the last sequence of the region's stream the writer took
	// over at: the recovery point (its first write is after it).
	From uint64    `json:"from"`
	Mode string    `json:"mode"` // handover or takeover
	At   time.Time `json:"at"`
	// Fenced, for a takeover whose copy ended with part of an atomic
	// commit, is that commit: deleted from the promoted copy, its pools'
	// read models refolded by every instance of the writer region that
	// applies the term (nil otherwise).
	Fenced *FencedCommit `json:"fenced,omitempty"`
}

// FencedCommit is an incomplete commit removed from a promoted copy: its
// id, the sequences it had there and their pools.
type FencedCommit struct {
	Commit string   `json:"commit"`
	Seqs   []uint64 `json:"seqs"`
	Pools  []string `json:"pools"`
}

// Terms is this domain's bucket of terms.
type Terms struct {
	kv   jetstream.KeyValue
	sync func(ctx context.Context, stream string) error
}

// SyncWith makes Raise wait, after the server stored a term, for sync to
// report the bucket's stream on disk (see streams/groupsync): an epoch must
// survive a power loss, or a fenced writer could come back unfenced.
func (t *Terms) SyncWith(sync func(ctx context.Context, stream string) error) { t.sync = sync }

// OpenTerms creates or opens the terms bucket in js's domain.
func OpenTerms(ctx context.Context, js jetstream.JetStream, replicas int) (*Terms, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      TermsBucket,
		Description: "which region writes each region's capacity pools, by epoch",
		History:     16,
		Storage:     jetstream.FileStorage,
		Replicas:    max(replicas, 1),
	})
	if err != nil {
		return nil, fmt.Errorf("kv: bucket %s: %w", TermsBucket, err)
	}
	return &Terms{kv: kv}, nil
}

// Get returns region's term in this domain; the zero Term (epoch 0,
// writer region) when none was written.
func (t *Terms) Get(ctx context.Context, region string) (Term, error) {
	return getTerm(ctx, t.kv, region)
}

func getTerm(ctx context.Context, kv jetstream.KeyValue, region string) (Term, error) {
	zero := Term{Region: region, Writer: region}
	e, err := kv.Get(ctx, region)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return zero, nil
	}
	if err != nil {
		return zero, fmt.Errorf("kv: term of %s: %w", region, err)
	}
	var term Term
	if err := json.Unmarshal(e.Value(), &term); err != nil {
		return zero, fmt.Errorf("kv: term of %s: %w", region, err)
	}
	return term, nil
}

// Raise stores term if its epoch is higher than the one stored here;
// otherwise it is an ECONFLICT capacity error (someone raised it first).
func (t *Terms) Raise(ctx context.Context, term Term) error {
	data, err := json.Marshal(term)
	if err != nil {
		return err
	}
	e, err := t.kv.Get(ctx, term.Region)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		_, err = t.kv.Create(ctx, term.Region, data)
	case err != nil:
		return fmt.Errorf("kv: term of %s: %w", term.Region, err)
	default:
		var cur Term
		if json.Unmarshal(e.Value(), &cur) == nil && cur.Epoch >= term.Epoch {
			if cur.Epoch == term.Epoch && cur.Writer == term.Writer {
				return nil // already stored
			}
			return capacity.Errorf(capacity.ECONFLICT, "region %s is at epoch %d already (writer %s)", term.Region, cur.Epoch, cur.Writer)
		}
		_, err = t.kv.Update(ctx, term.Region, data, e.Revision())
	}
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return capacity.Errorf(capacity.ECONFLICT, "the term of region %s changed meanwhile", term.Region)
	}
	if err != nil {
		return fmt.Errorf("kv: raise term of %s: %w", term.Region, err)
	}
	if t.sync != nil {
		if err := t.sync(ctx, "KV_"+TermsBucket); err != nil {
			return fmt.Errorf("kv: term of %s stored but not known to be on disk: %w", term.Region, err)
		}
	}
	return nil
}

// PeerTerm reads region's term in another domain's bucket over nc (a
// peer region's, across the leaf link). A domain without the bucket has
// the zero term.
func PeerTerm(ctx context.Context, nc *nats.Conn, domain, region string) (Term, error) {
	js, err := jetstream.NewWithDomain(nc, domain)
	if err != nil {
		return Term{}, err
	}
	kv, err := js.KeyValue(ctx, TermsBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return Term{Region: region, Writer: region}, nil
	}
	if err != nil {
		return Term{}, fmt.Errorf("kv: terms of domain %s: %w", domain, err)
	}
	return getTerm(ctx, kv, region)
}
