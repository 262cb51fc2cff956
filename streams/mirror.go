package streams

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/capacityd/capacityd/capacity"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// A region's events are mirrored into every other region's JetStream domain
// as a stream of the same name (CAPACITY_<REGION>): a mirror keeps the
// origin's sequences (ADR-59), so a pool's subject sequences, the versions
// clients hold and the read models' positions mean the same in every copy.
// The mirror reaches its origin through the origin domain's API prefix
// ($JS.<region>.API) over the leaf-node link between the regions.
//
// A mirror has no subjects until it is promoted, and each region's events
// live under their own prefix (capacity.<region>.>), so no two streams of
// one domain ever claim the same subjects. After a promotion, though, the
// promoted copy listens on capacity.<region>.> in this domain while the old
// origin may still listen on the same subjects in its own: interest crosses
// leaf nodes, and one publish would be stored in both (NATS-NOTES, "Mirrors
// and regions"). LinkDeny lists the subjects a region link must not carry.

// LinkDeny returns the subjects that must not cross a leaf-node link between
// regions (both directions): every region's event subjects. Mirrors travel on
// the JetStream API and $JS.M delivery subjects, which stay open.
func LinkDeny() []string { return []string{subjectRoot + ".>"} }

// MirrorStatus is how far this domain's copy of a region's stream is.
type MirrorStatus struct {
	Region   string        // the origin region
	Stream   string        // the stream name in both domains
	LastSeq  uint64        // last sequence held by this copy
	Lag      uint64        // messages the origin has that this copy has not (as last reported by the origin)
	Active   time.Duration // since the mirror last heard from its origin; -1 if never
	Error    string        // the mirror's last error, "" if none
	Promoted bool          // the copy is no longer a mirror: this domain writes it
	Origin   string        // the domain the mirror follows ("" once promoted)
}

// Mirror is this domain's copy of another region's event stream.
type Mirror struct {
	js     jetstream.JetStream
	region string
	name   string
	stream jetstream.Stream
}

// EnsureMirror creates, or checks, the mirror in js's domain of region's
// event stream in the JetStream domain named region. A stream of that name
// that was promoted (no mirror config, the region's subjects) is returned
// as is; anything else of that name is refused with ErrInvalid. The origin
// need not be reachable: the server keeps retrying the mirror.
func EnsureMirror(ctx context.Context, js jetstream.JetStream, region string, opts ...Option) (*Mirror, error) {
	return EnsureMirrorFrom(ctx, js, region, region, opts...)
}

// EnsureMirrorFrom is EnsureMirror with the copy in domain origin as the
// one to follow (the head after a promotion there). An existing mirror of
// region's stream is returned as is whatever domain it follows (see
// MirrorStatus.Origin), as is a promoted copy.
func EnsureMirrorFrom(ctx context.Context, js jetstream.JetStream, region, origin string, opts ...Option) (*Mirror, error) {
	if js == nil {
		return nil, invalidf("nil JetStream")
	}
	if !capacity.ValidID(region) {
		return nil, invalidf("region %q: want [A-Za-z0-9_-]{1,64}", region)
	}
	o := defaultOptions()
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	name := StreamName(region)
	if !capacity.ValidID(origin) {
		return nil, invalidf("origin %q: want [A-Za-z0-9_-]{1,64}", origin)
	}
	want := MirrorConfig(region, o.replicas)
	want.Mirror.External.APIPrefix = DomainAPIPrefix(origin)
	if origin != region {
		want.Description = "mirror of region " + region + "'s capacity events, from the head in region " + origin
	}
	stream, err := js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		stream, err = js.CreateStream(ctx, want)
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			stream, err = js.Stream(ctx, name)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("streams: mirror %s: %w", name, err)
	}
	cfg := stream.CachedInfo().Config
	switch {
	case cfg.Mirror == nil:
		prefix := subjectRoot + "." + region + ".>"
		if len(cfg.Subjects) != 1 || cfg.Subjects[0] != prefix {
			return nil, invalidf("stream %s is neither a mirror of region %s nor its promoted copy (subjects %v)", name, region, cfg.Subjects)
		}
	case cfg.Mirror.Name != name || mirrorOrigin(cfg) == "":
		return nil, invalidf("stream %s mirrors %s via %v, want %s via %s", name, cfg.Mirror.Name, cfg.Mirror.External, name, want.Mirror.External.APIPrefix)
	}
	return &Mirror{js: js, region: region, name: name, stream: stream}, nil
}

// MirrorConfig is the configuration of the mirror of region's event stream:
// same name, no subjects, the origin reached through its domain's API prefix.
// No direct get: a lagging copy must never answer a read meant for the head.
func MirrorConfig(region string, replicas int) jetstream.StreamConfig {
	name := StreamName(region)
	return jetstream.StreamConfig{
		Name:        name,
		Description: "mirror of region " + region + "'s capacity events",
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Replicas:    replicas,
		MaxMsgs:     -1,
		MaxBytes:    -1,
		MaxAge:      0,
		Discard:     jetstream.DiscardOld,
		Mirror: &jetstream.StreamSource{
			Name:     name,
			External: &jetstream.ExternalStream{APIPrefix: DomainAPIPrefix(region)},
		},
	}
}

// DomainAPIPrefix is the JetStream API prefix of another domain, "$JS.<domain>.API".
func DomainAPIPrefix(domain string) string { return "$JS." + domain + ".API" }

// Region returns the origin region.
func (m *Mirror) Region() string { return m.region }

// StreamName returns the copy's stream name (the origin's).
func (m *Mirror) StreamName() string { return m.name }

// Status reports the copy's last sequence and, while it is a mirror, its lag
// and activity as the server tracks them (StreamInfo.Mirror).
func (m *Mirror) Status(ctx context.Context) (MirrorStatus, error) {
	info, err := m.stream.Info(ctx)
	if err != nil {
		return MirrorStatus{Region: m.region, Stream: m.name, Active: -1}, fmt.Errorf("streams: mirror %s info: %w", m.name, err)
	}
	st := MirrorStatus{Region: m.region, Stream: m.name, LastSeq: info.State.LastSeq, Active: -1}
	if info.Config.Mirror == nil {
		st.Promoted = true
		return st, nil
	}
	st.Origin = mirrorOrigin(info.Config)
	if mi := info.Mirror; mi != nil {
		st.Lag, st.Active = mi.Lag, mi.Active
		if mi.Error != nil {
			st.Error = mi.Error.Error()
		}
	}
	return st, nil
}

// DomainReachable reports whether the JetStream of domain answers an
// account-info request over nc before ctx ends.
func DomainReachable(ctx context.Context, nc *nats.Conn, domain string) bool {
	js, err := jetstream.NewWithDomain(nc, domain)
	if err != nil {
		return false
	}
	_, err = js.AccountInfo(ctx)
	return err == nil
}
