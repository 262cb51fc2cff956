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

// VerifyBucket is the bucket capacityd verify keeps its last verdict on
// each region in: key the region verified, in every domain verify reached,
// so each region's capacityd reads it from its own domain (GET /v1/regions,
// the planner board). One revision per key: the last verdict is all that
// is kept; a verdict is a report, never a reason to change what is
// written.
const VerifyBucket = "capacity_verify"

// verdictJSON is a verdict as stored.
type verdictJSON struct {
	Region      string    `json:"region"`
	At          time.Time `json:"at"`
	OK          bool      `json:"ok"`
	Head        string    `json:"head"`
	Epoch       uint64    `json:"epoch"`
	HeadLastSeq uint64    `json:"head_last_seq"`
	Copies      int       `json:"copies"`
	ReadModels  int       `json:"read_models"`
	Summary     string    `json:"summary"`
}

// PutVerdict stores v as the last verdict on v.Region in domain's bucket,
// creating the bucket (R1: a report, cheap to lose) if needed.
func PutVerdict(ctx context.Context, nc *nats.Conn, domain string, v capacity.VerifyVerdict) error {
	js, err := jetstream.NewWithDomain(nc, domain)
	if err != nil {
		return err
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      VerifyBucket,
		Description: "capacityd verify's last verdict on each region",
		History:     1,
		Storage:     jetstream.FileStorage,
	})
	if err != nil {
		return fmt.Errorf("kv: bucket %s in domain %s: %w", VerifyBucket, domain, err)
	}
	body, err := json.Marshal(verdictJSON(v))
	if err != nil {
		return err
	}
	_, err = kv.Put(ctx, v.Region, body)
	return err
}

// Verdicts reads the last verdicts of capacityd verify in one domain.
type Verdicts struct {
	js jetstream.JetStream
}

// NewVerdicts reads the verdicts in js's domain.
func NewVerdicts(js jetstream.JetStream) *Verdicts { return &Verdicts{js: js} }

// Get returns the last verdict on region; false when verify never
// published one here.
func (v *Verdicts) Get(ctx context.Context, region string) (capacity.VerifyVerdict, bool, error) {
	kv, err := v.js.KeyValue(ctx, VerifyBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return capacity.VerifyVerdict{}, false, nil
	}
	if err != nil {
		return capacity.VerifyVerdict{}, false, fmt.Errorf("kv: bucket %s: %w", VerifyBucket, err)
	}
	e, err := kv.Get(ctx, region)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return capacity.VerifyVerdict{}, false, nil
	}
	if err != nil {
		return capacity.VerifyVerdict{}, false, fmt.Errorf("kv: verdict on %s: %w", region, err)
	}
	var out verdictJSON
	if err := json.Unmarshal(e.Value(), &out); err != nil {
		return capacity.VerifyVerdict{}, false, fmt.Errorf("kv: verdict on %s: %w", region, err)
	}
	return capacity.VerifyVerdict(out), true, nil
}
