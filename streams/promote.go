package streams

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Promotion is what promoting a region's mirror found: the last sequence
// of the copy's last complete commit when it stopped following its origin
// (the recovery point of a takeover), and a commit it held only part of,
// if any, now fenced.
type Promotion struct {
	LastSeq uint64
	// Incomplete is the last commit of the copy when only its first
	// messages arrived before the promotion (nil when complete). Its
	// messages are deleted from the promoted stream (Fenced) and LastSeq is
	// the sequence before them.
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
	// Fenced are the messages deleted from the promoted stream, in order.
	Fenced []FencedMessage
}

// FencedMessage is one message of an incomplete commit, deleted from the
// promoted stream: its sequence, pool, message id and event type.
type FencedMessage struct {
	Seq  uint64
	Pool string
	ID   string
	Type string
}

// Pools returns the pools of the fenced messages, in order, each once.
func (ic *IncompleteCommit) Pools() []string {
	var out []string
	for _, m := range ic.Fenced {
		if !slices.Contains(out, m.Pool) {
			out = append(out, m.Pool)
		}
	}
	return out
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
//
// Fencing an incomplete commit: a copy promoted mid-replication may end
// with the first messages of an atomic batch and not the rest (mirrors
// strip the server's batch headers; the store's HeaderCommit* show it).
// Those messages are deleted from the promoted stream before Promote
// returns, so the head never holds part of an all-or-nothing commit, and
// Promotion.LastSeq is the sequence before them. Deleting after the update
// rather than before: until then the mirror may still receive more of the
// commit, after it nothing arrives from the origin; and the stream's
// subjects are written by nobody yet (capacityd starts the
// region's write side only once Promote returns and the new term is
// stored; the old writer publishes in its own domain, whose event
// subjects the region link denies). The sequences stay used: the next
// write comes after them, and expected-sequence checks see each pool's
// last complete commit. The caller must drop what was derived from the
// fenced messages (snapshots, read models: Promotion.Incomplete.Pools).
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
	if p.LastSeq == 0 {
		return p, nil
	}
	// Also when promoted before: a promotion that failed while fencing is
	// finished by the next (a copy ending with a complete commit, or whose
	// fenced tail is gone, has nothing to fence).
	ic, err := m.incompleteAt(ctx, p.LastSeq)
	if err != nil || ic == nil {
		return p, err
	}
	if err := m.fence(ctx, ic); err != nil {
		return p, err
	}
	p.Incomplete, p.LastSeq = ic, ic.FirstSeq-1
	return p, nil
}

// fence deletes the messages of an incomplete commit from the promoted
// stream, recording each. Every message is read before any is deleted, so
// a failure while reading leaves the commit whole for the next promotion
// to fence; one deleted by a fence that failed later is skipped.
func (m *Mirror) fence(ctx context.Context, ic *IncompleteCommit) error {
	var fenced []FencedMessage
	for seq := ic.FirstSeq; seq <= ic.LastSeq; seq++ {
		msg, err := m.stream.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("streams: fencing commit %s: message %d of %s: %w", ic.Commit, seq, m.name, err)
		}
		if got := msg.Header.Get(HeaderCommit); got != ic.Commit {
			return fmt.Errorf("streams: fencing commit %s: message %d of %s belongs to commit %q", ic.Commit, seq, m.name, got)
		}
		pool, _ := poolOfSubject(msg.Subject)
		fenced = append(fenced, FencedMessage{Seq: seq, Pool: pool, ID: msg.Header.Get(nats.MsgIdHdr), Type: msg.Header.Get(HeaderEventType)})
	}
	for _, f := range fenced {
		if err := m.stream.DeleteMsg(ctx, f.Seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			return fmt.Errorf("streams: fencing commit %s: deleting message %d of %s: %w", ic.Commit, f.Seq, m.name, err)
		}
	}
	ic.Fenced = fenced
	return nil
}

// incompleteAt reports the commit of the message at seq if the copy holds
// only its first messages.
func (m *Mirror) incompleteAt(ctx context.Context, seq uint64) (*IncompleteCommit, error) {
	msg, err := m.stream.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil // deleted: fenced before
	}
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
