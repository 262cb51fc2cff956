package streams

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Failback extends the chain of writers instead of reversing it: a region
// that no longer writes a region's pools follows the head (the writer's
// copy) with a mirror. Where its copy is not such a mirror (it wrote the
// stream itself, or it was the origin of a takeover), the copy is first set
// aside whole under FencedName (never merged, never deleted by capacityd),
// then a fresh mirror of the head takes the stream's name. A mirror cannot
// be added to an existing stream, hence the new stream.

// CopyState is this domain's copy of a region's stream as it is now.
type CopyState struct {
	Exists  bool
	LastSeq uint64
	Msgs    uint64
	// Origin is the domain the copy mirrors; "" when it is writable (the
	// region's own stream, or a promoted copy).
	Origin string
}

// Copy reports this domain's copy of region's stream.
func Copy(ctx context.Context, js jetstream.JetStream, region string) (CopyState, error) {
	stream, err := js.Stream(ctx, StreamName(region))
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return CopyState{}, nil
	}
	if err != nil {
		return CopyState{}, fmt.Errorf("streams: copy of %s: %w", StreamName(region), err)
	}
	info := stream.CachedInfo()
	return CopyState{Exists: true, LastSeq: info.State.LastSeq, Msgs: info.State.Msgs, Origin: mirrorOrigin(info.Config)}, nil
}

// mirrorOrigin returns the domain a mirror config follows, "" if cfg is
// not a mirror of another domain's stream.
func mirrorOrigin(cfg jetstream.StreamConfig) string {
	if cfg.Mirror == nil || cfg.Mirror.External == nil {
		return ""
	}
	p := cfg.Mirror.External.APIPrefix
	if !strings.HasPrefix(p, "$JS.") || !strings.HasSuffix(p, ".API") {
		return ""
	}
	return strings.TrimSuffix(strings.TrimPrefix(p, "$JS."), ".API")
}

// FencedName is the name a region's copy is kept under once set aside at
// epoch: CAPACITY_<REGION>_FENCED_<epoch>.
func FencedName(region string, epoch uint64) string {
	return StreamName(region) + "_FENCED_" + strconv.FormatUint(epoch, 10)
}

// Aside is a copy set aside.
type Aside struct {
	Stream  string
	LastSeq uint64
	Msgs    uint64
}

// SetAside keeps this domain's copy of region's stream whole under name,
// then deletes the copy so that its name is free for a mirror of the head.
// The kept stream is a mirror in this domain until it holds every message
// (same sequences), then a sealed stream of its own: nothing is written to
// it again and capacityd never deletes it. An existing stream of that name
// holding the same last sequence is taken as an earlier, interrupted set
// aside; anything else refuses with ErrInvalid.
func SetAside(ctx context.Context, js jetstream.JetStream, region, name string) (Aside, error) {
	src, err := js.Stream(ctx, StreamName(region))
	if err != nil {
		return Aside{}, fmt.Errorf("streams: set aside %s: %w", StreamName(region), err)
	}
	want := src.CachedInfo().State
	aside, err := js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		aside, err = js.CreateStream(ctx, jetstream.StreamConfig{
			Name:        name,
			Description: fmt.Sprintf("region %s's capacity events as this domain held them when another region's copy became the head (set aside, not merged)", region),
			Storage:     jetstream.FileStorage,
			Retention:   jetstream.LimitsPolicy,
			Replicas:    src.CachedInfo().Config.Replicas,
			MaxMsgs:     -1,
			MaxBytes:    -1,
			Discard:     jetstream.DiscardOld,
			Mirror:      &jetstream.StreamSource{Name: StreamName(region)},
		})
	}
	if err != nil {
		return Aside{}, fmt.Errorf("streams: set aside %s as %s: %w", StreamName(region), name, err)
	}
	for {
		info, err := aside.Info(ctx)
		if err != nil {
			return Aside{}, fmt.Errorf("streams: set aside %s: %w", name, err)
		}
		if info.State.LastSeq == want.LastSeq && info.State.Msgs == want.Msgs {
			if info.Config.Mirror != nil || !info.Config.Sealed {
				cfg := info.Config
				cfg.Mirror = nil
				cfg.Subjects = nil // the server gives it its name as its only subject
				cfg.Sealed = true
				if _, err := js.UpdateStream(ctx, cfg); err != nil {
					return Aside{}, fmt.Errorf("streams: seal %s: %w", name, err)
				}
			}
			break
		}
		if info.Config.Mirror == nil {
			return Aside{}, invalidf("stream %s exists and is not a copy of %s (last_seq %d, want %d)", name, StreamName(region), info.State.LastSeq, want.LastSeq)
		}
		select {
		case <-ctx.Done():
			return Aside{}, fmt.Errorf("streams: set aside %s: at %d of %d: %w", name, info.State.LastSeq, want.LastSeq, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
	if err := js.DeleteStream(ctx, StreamName(region)); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return Aside{}, fmt.Errorf("streams: set aside: delete %s: %w", StreamName(region), err)
	}
	return Aside{Stream: name, LastSeq: want.LastSeq, Msgs: want.Msgs}, nil
}

// Asides lists the copies of region's stream set aside in this domain.
func Asides(ctx context.Context, js jetstream.JetStream, region string) ([]string, error) {
	var out []string
	names := js.StreamNames(ctx)
	for name := range names.Name() {
		if strings.HasPrefix(name, StreamName(region)+"_FENCED_") {
			out = append(out, name)
		}
	}
	return out, names.Err()
}
