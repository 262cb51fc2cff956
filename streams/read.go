package streams

import (
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Read yields the pool's events with Seq > afterSeq in order, up to the pool's last sequence at the time of
// the call, then stops. It reads through an ordered consumer, which the stream leader serves, so it sees
// every acknowledged append. A failure is yielded once as the error of a zero Recorded, and ends the sequence.
func (s *Store) Read(ctx context.Context, pool string, afterSeq uint64) iter.Seq2[Recorded, error] {
	return func(yield func(Recorded, error) bool) {
		last, err := s.LastSeq(ctx, pool)
		if err != nil {
			yield(Recorded{}, err)
			return
		}
		if last <= afterSeq {
			return
		}
		s.consume(ctx, s.prefix+pool, afterSeq+1, last, yield)
	}
}

// Log yields every event of the stream, all pools, with Seq >= fromSeq up to the stream's last sequence at
// the time of the call, in order.
func (s *Store) Log(ctx context.Context, fromSeq uint64) iter.Seq2[Recorded, error] {
	return func(yield func(Recorded, error) bool) {
		last, err := s.StreamLastSeq(ctx)
		if err != nil {
			yield(Recorded{}, err)
			return
		}
		fromSeq = max(fromSeq, 1)
		if last < fromSeq {
			return
		}
		s.consume(ctx, "", fromSeq, last, yield)
	}
}

// consume delivers the messages matching filter (all if empty) from startSeq through lastSeq to yield.
func (s *Store) consume(ctx context.Context, filter string, startSeq, lastSeq uint64, yield func(Recorded, error) bool) {
	cfg := jetstream.OrderedConsumerConfig{
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       startSeq,
		InactiveThreshold: 30 * time.Second,
		MaxResetAttempts:  3,
	}
	if filter != "" {
		cfg.FilterSubjects = []string{filter}
	}
	createCtx, cancel := s.withTimeout(ctx)
	cons, err := s.stream.OrderedConsumer(createCtx, cfg)
	cancel()
	if err != nil {
		yield(Recorded{}, fmt.Errorf("streams: create ordered consumer: %w", err))
		return
	}
	batch := int(min(lastSeq-startSeq+1, 1000))
	msgs, err := cons.Messages(jetstream.PullMaxMessages(max(batch, 2)))
	if err != nil {
		yield(Recorded{}, fmt.Errorf("streams: consume: %w", err))
		return
	}
	defer func() {
		msgs.Stop()
		s.deleteConsumer(ctx, cons)
	}()
	for {
		m, err := msgs.Next(jetstream.NextContext(ctx))
		if err != nil {
			yield(Recorded{}, fmt.Errorf("streams: read: %w", err))
			return
		}
		meta, err := m.Metadata()
		if err != nil {
			yield(Recorded{}, fmt.Errorf("streams: read metadata: %w", err))
			return
		}
		rec, err := s.recorded(m.Subject(), meta.Sequence.Stream, meta.Timestamp, m.Headers(), m.Data())
		if !yield(rec, err) || err != nil {
			return
		}
		if meta.Sequence.Stream >= lastSeq || meta.NumPending == 0 {
			return
		}
	}
}

// deleteConsumer removes the ordered consumer's server-side state instead of leaving it to expire.
func (s *Store) deleteConsumer(ctx context.Context, cons jetstream.Consumer) {
	info := cons.CachedInfo()
	if info == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.timeout)
	defer cancel()
	_ = s.stream.DeleteConsumer(ctx, info.Name) // best effort: InactiveThreshold removes it otherwise
}

// recorded decodes a stored message of this store's stream (Decode) and
// refuses one on another region's subjects.
func (s *Store) recorded(subject string, seq uint64, ts time.Time, hdr nats.Header, data []byte) (Recorded, error) {
	if !strings.HasPrefix(subject, s.prefix) {
		return Recorded{}, fmt.Errorf("streams: message %d on foreign subject %q", seq, subject)
	}
	return Decode(subject, seq, ts, hdr, data)
}

// msgGetRequest is the body of a $JS.API.STREAM.MSG.GET request.
type msgGetRequest struct {
	Seq     uint64 `json:"seq,omitempty"`
	LastFor string `json:"last_by_subj,omitempty"`
	NextFor string `json:"next_by_subj,omitempty"`
}

// storedMsg is a message as returned by $JS.API.STREAM.MSG.GET.
type storedMsg struct {
	Subject string    `json:"subject"`
	Seq     uint64    `json:"seq"`
	Header  []byte    `json:"hdrs,omitempty"`
	Data    []byte    `json:"data,omitempty"`
	Time    time.Time `json:"time"`
}

// msgID returns the message's Nats-Msg-Id header, or "" if it has none or the headers do not decode.
func (m *storedMsg) msgID() string {
	if len(m.Header) == 0 {
		return ""
	}
	hdr, err := nats.DecodeHeadersMsg(m.Header)
	if err != nil {
		return ""
	}
	return hdr.Get(nats.MsgIdHdr)
}

// getMsg fetches one message through the stream leader ($JS.API.STREAM.MSG.GET, never a direct get, which a
// follower or mirror may answer with stale data). It returns nil, nil if there is no such message.
func (s *Store) getMsg(ctx context.Context, req msgGetRequest) (*storedMsg, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	resp, err := s.nc.RequestWithContext(ctx, s.msgGetSubj, body)
	if err != nil {
		return nil, err
	}
	var r struct {
		Error   *jetstream.APIError `json:"error,omitempty"`
		Message *storedMsg          `json:"message,omitempty"`
	}
	if err := json.Unmarshal(resp.Data, &r); err != nil {
		return nil, fmt.Errorf("decode msg get response: %w", err)
	}
	if r.Error != nil {
		if r.Error.ErrorCode == codeNoMessageFound {
			return nil, nil
		}
		return nil, fmt.Errorf("nats: %w", r.Error)
	}
	if r.Message == nil {
		return nil, fmt.Errorf("msg get: empty response")
	}
	return r.Message, nil
}
