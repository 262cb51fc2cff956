package streams

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Promotion is what promoting a region's mirror found: the copy's last
// sequence when it stopped following its origin (the recovery point of a
// takeover), and a commit it holds only part of, if any.
type Promotion struct {
	LastSeq uint64
	// Incomplete is the last commit of the copy when only its first
	// messages arrived before the promotion (nil when complete).
	Incomplete *IncompleteCommit
	// Already is true when the copy was promoted before.
	Already bool
}

// IncompleteCommit is an atomic batch of which a copy holds the first Have
// of Want messages, at sequences FirstSeq..LastSeq. Mirrors strip the
// server's Nats-Batch-* headers; the store's own HeaderCommit* show it.
type IncompleteCommit struct {
	Commit            string
	FirstSeq, LastSeq uint64
	Have, Want        int
}

// WaitFor waits until the copy holds sequence seq of its origin, polling
// its state, or ctx ends.
func (m *Mirror) WaitFor(ctx context.Context, seq uint64) error {
	for {
		st, err := m.Status(ctx)
		if err == nil && st.LastSeq >= seq {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("streams: mirror %s at %d, waiting for %d: %w", m.name, st.LastSeq, seq, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Promote makes this domain's copy of the region's stream its head: it
// stops following the origin and takes the region's subjects, in the order
// the server requires (ADR-59, server 2.12+): a mirror has no subjects of
// its own, so one update drops the mirror config and sets the subjects;
// atomic publish, which a mirror cannot allow, is then enabled by New (the
// Store over the promoted stream). Promoting a copy promoted before
// reports it and changes nothing.
func (m *Mirror) Promote(ctx context.Context) (Promotion, error) {
	info, err := m.stream.Info(ctx)
	if err != nil {
		return Promotion{}, fmt.Errorf("streams: promote %s: %w", m.name, err)
	}
	p := Promotion{LastSeq: info.State.LastSeq}
	if info.Config.Mirror == nil {
		p.Already = true
	} else {
		cfg := info.Config
		cfg.Mirror = nil
		cfg.Subjects = []string{subjectRoot + "." + m.region + ".>"}
		cfg.Description = "region " + m.region + "'s capacity events (promoted copy)"
		stream, err := m.js.UpdateStream(ctx, cfg)
		if err != nil {
			return Promotion{}, fmt.Errorf("streams: promote %s: %w", m.name, err)
		}
		m.stream = stream
		// The last sequence as the promoted stream holds it: nothing more
		// arrives from the origin.
		if info, err = stream.Info(ctx); err == nil {
			p.LastSeq = info.State.LastSeq
		}
	}
	if p.LastSeq > 0 {
		p.Incomplete, err = m.incompleteAt(ctx, p.LastSeq)
		if err != nil {
			return p, err
		}
	}
	return p, nil
}

// incompleteAt reports the commit of the message at seq if the copy holds
// only its first messages.
func (m *Mirror) incompleteAt(ctx context.Context, seq uint64) (*IncompleteCommit, error) {
	msg, err := m.stream.GetMsg(ctx, seq)
	if err != nil {
		return nil, fmt.Errorf("streams: last message of %s: %w", m.name, err)
	}
	return incompleteCommit(msg, seq), nil
}

func incompleteCommit(msg *jetstream.RawStreamMsg, seq uint64) *IncompleteCommit {
	id := msg.Header.Get(HeaderCommit)
	if id == "" {
		return nil
	}
	at, err1 := strconv.Atoi(msg.Header.Get(HeaderCommitSeq))
	count, err2 := strconv.Atoi(msg.Header.Get(HeaderCommitCount))
	if err1 != nil || err2 != nil || at < 1 || at >= count {
		return nil
	}
	return &IncompleteCommit{Commit: id, FirstSeq: seq - uint64(at) + 1, LastSeq: seq, Have: at, Want: count}
}
