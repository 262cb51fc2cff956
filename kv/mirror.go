package kv

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/capacityd/capacityd/capacity"
	"github.com/nats-io/nats.go/jetstream"
)

// Another region's snapshots are made available here as a plain stream
// mirror, SNAPSHOTS_<REGION>, of that region's bucket stream (KV_<bucket> in
// its domain) filtered to that region's own keys ($KV.<bucket>.<region>.>).
// Not a KV mirror (KeyValueConfig.Mirror): nats.go gives those MirrorDirect,
// so the copy would join the direct-get queue of KV_<bucket> in this domain
// and answer reads meant for this region's own bucket of the same name.
// Not a source into this region's bucket either: a source keeps feeding
// after a failover, and a fenced region's snapshots of its diverged tail
// would land beside the new writer's. A mirror has no subjects, nothing can
// write into it, and it can be stopped (promoted) at a known point.
//
// A mirrored snapshot folds events up to its Seq of the origin's history; it
// is valid in another copy of that history only up to the copy's recovery
// point (the last sequence the copies share): MirroredSnapshots.Get takes it.

// LinkDeny returns the subjects of bucket that must not cross a leaf-node
// link between regions: each region's bucket has the same name and subjects
// in its own domain, and a put would otherwise be stored in both.
func LinkDeny(bucket string) []string { return []string{"$KV." + bucket + ".>"} }

// MirrorStreamName is the name of the mirror of region's snapshots.
func MirrorStreamName(region string) string {
	var b strings.Builder
	b.WriteString("SNAPSHOTS_")
	for _, r := range strings.ToUpper(region) {
		if (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

// MirroredSnapshots reads another region's pool snapshots from their mirror.
type MirroredSnapshots struct {
	stream jetstream.Stream
	bucket string
	region string
}

// EnsureMirror creates, or checks, the mirror in js's domain of the
// snapshots that region keeps in its bucket (in the JetStream domain named
// region). The origin need not be reachable.
func EnsureMirror(ctx context.Context, js jetstream.JetStream, bucket, region string, replicas int) (*MirroredSnapshots, error) {
	if js == nil || !validBucket.MatchString(bucket) || !capacity.ValidID(region) {
		return nil, fmt.Errorf("%w: mirror of bucket %q for region %q", ErrInvalid, bucket, region)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	name := MirrorStreamName(region)
	want := jetstream.StreamConfig{
		Name:        name,
		Description: "mirror of region " + region + "'s pool snapshots",
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
		MaxMsgs:     -1,
		MaxBytes:    -1,
		// The origin keeps one value per key; so does the copy.
		MaxMsgsPerSubject: 1,
		Mirror: &jetstream.StreamSource{
			Name:          "KV_" + bucket,
			FilterSubject: "$KV." + bucket + "." + region + ".>",
			External:      &jetstream.ExternalStream{APIPrefix: "$JS." + region + ".API"},
		},
	}
	stream, err := js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		stream, err = js.CreateStream(ctx, want)
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			stream, err = js.Stream(ctx, name)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("kv: snapshot mirror %s: %w", name, err)
	}
	if m := stream.CachedInfo().Config.Mirror; m != nil && (m.Name != want.Mirror.Name || m.FilterSubject != want.Mirror.FilterSubject) {
		return nil, fmt.Errorf("%w: stream %s mirrors %s %s, want %s %s", ErrInvalid, name, m.Name, m.FilterSubject, want.Mirror.Name, want.Mirror.FilterSubject)
	}
	return &MirroredSnapshots{stream: stream, bucket: bucket, region: region}, nil
}

// StreamName returns the mirror's stream name.
func (m *MirroredSnapshots) StreamName() string { return m.stream.CachedInfo().Config.Name }

// Get returns the mirrored snapshot of pool if it folds no event after
// upTo (the last sequence this region's copy of the events shares with the
// origin); capacity.ErrNoSnapshot if there is none or it is beyond upTo.
func (m *MirroredSnapshots) Get(ctx context.Context, pool string, upTo uint64) (uint64, []byte, error) {
	if !capacity.ValidID(pool) {
		return 0, nil, fmt.Errorf("%w: pool %q", ErrInvalid, pool)
	}
	msg, err := m.stream.GetLastMsgForSubject(ctx, "$KV."+m.bucket+"."+m.region+"."+pool)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, nil, capacity.ErrNoSnapshot
	}
	if err != nil {
		return 0, nil, fmt.Errorf("kv: mirrored snapshot of %s: %w", pool, err)
	}
	if op := msg.Header.Get("KV-Operation"); op != "" { // DEL or PURGE
		return 0, nil, capacity.ErrNoSnapshot
	}
	seq, data, err := decode(msg.Data)
	if err != nil {
		return 0, nil, fmt.Errorf("%w: mirrored %s: %v", ErrCorrupt, pool, err)
	}
	if seq > upTo {
		return 0, nil, capacity.ErrNoSnapshot
	}
	return seq, data, nil
}

// Lag reports how many of the origin's messages the mirror has not yet.
func (m *MirroredSnapshots) Lag(ctx context.Context) (uint64, error) {
	info, err := m.stream.Info(ctx)
	if err != nil {
		return 0, err
	}
	if info.Mirror == nil {
		return 0, nil
	}
	return info.Mirror.Lag, nil
}
