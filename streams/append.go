package streams

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/capacityd/capacityd/capacity"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// pubAck is the server's reply to a publish; batch and count are set on an atomic batch commit's reply.
type pubAck struct {
	Error     *jetstream.APIError `json:"error,omitempty"`
	Stream    string              `json:"stream"`
	Seq       uint64              `json:"seq"`
	Duplicate bool                `json:"duplicate,omitempty"`
	Batch     string              `json:"batch,omitempty"`
	Count     int                 `json:"count,omitempty"`
}

// Append stores events on the pool's subject iff the subject's last sequence is expectedSeq (0 = no events yet).
//
// One event is a plain publish; several are one atomic batch, stored all or nothing at the contiguous stream
// sequences lastSeq-len(events)+1 .. lastSeq. It returns ErrConflict (wrapped) when the subject moved past
// expectedSeq, ErrBatchTooLarge above 1000 events, ErrInvalid for malformed input and ErrUnknownOutcome when
// the server did not answer and the store could not tell whether the events were stored. An Append that
// finds its own events (same first and last ID) stored right after expectedSeq succeeds, so retrying an
// Append with the same expectedSeq and IDs is safe; see the package documentation.
func (s *Store) Append(ctx context.Context, pool string, expectedSeq uint64, events []Event) (lastSeq uint64, err error) {
	if lastSeq, err = s.append(ctx, pool, expectedSeq, events); err != nil {
		return 0, err
	}
	return lastSeq, s.synced(ctx)
}

// synced waits, when the Store was given a sync function (WithSync), until what the server acknowledged so
// far is on disk. A failure leaves the append stored but not known to be durable: ErrUnknownOutcome.
func (s *Store) synced(ctx context.Context) error {
	if s.opts.sync == nil {
		return nil
	}
	if err := s.opts.sync(ctx, s.name); err != nil {
		return fmt.Errorf("%w: stored, but not known to be on disk: %v", ErrUnknownOutcome, err)
	}
	return nil
}

func (s *Store) append(ctx context.Context, pool string, expectedSeq uint64, events []Event) (lastSeq uint64, err error) {
	if err := validateAppend(pool, events); err != nil {
		return 0, err
	}
	subject := s.prefix + pool
	var ack pubAck
	if len(events) == 1 {
		ack, err = s.publishOne(ctx, subject, expectedSeq, &events[0])
	} else {
		ack, err = s.publishBatch(ctx, subject, expectedSeq, events)
	}
	if err == nil {
		if ack.Error == nil {
			return ack.Seq, nil
		}
		err = fmt.Errorf("nats: %w", ack.Error)
	}
	return s.resolve(ctx, pool, expectedSeq, events, err)
}

// publishOne publishes a single event with the expected-subject-sequence check and waits for its ack.
func (s *Store) publishOne(ctx context.Context, subject string, expectedSeq uint64, e *Event) (pubAck, error) {
	hdr := make(nats.Header, 5+len(e.Header))
	for k, v := range e.Header {
		hdr[k] = []string{v}
	}
	hdr[nats.MsgIdHdr] = []string{e.ID}
	hdr[HeaderEventType] = []string{e.Type}
	hdr[HeaderEventVersion] = []string{strconv.Itoa(e.Version)}
	hdr[hdrExpectedSubj] = []string{strconv.FormatUint(expectedSeq, 10)}
	return s.requestResending(ctx, &nats.Msg{Subject: subject, Header: hdr, Data: e.Data})
}

// resendPause is how long requestResending waits before sending again after nobody took the message.
const resendPause = 100 * time.Millisecond

// requestResending sends m and, while no server answers it (an attempt times out, or nobody is subscribed:
// the stream has no leader during an election), sends the very same message again until ctx's deadline. A
// resend is safe: it carries the same Nats-Msg-Id and expected sequence, so the first copy stored is the
// only one (an R3 stream answers the resend as a duplicate; an R1 stream answers 10071 and resolve finds
// the message). 10164 (another write to the subject in flight, on a replicated stream, possibly our own
// earlier copy) is sent again too. The last failure is returned; a no-responders failure is only returned
// as such (a definite "nothing stored") when no earlier attempt may have reached a server.
func (s *Store) requestResending(ctx context.Context, m *nats.Msg) (pubAck, error) {
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	reached := false // an attempt may have reached a stream leader
	for {
		attemptCtx, attemptCancel := context.WithTimeout(ctx, s.opts.attempt)
		ack, err := s.request(attemptCtx, m)
		attemptCancel()
		switch {
		case err == nil && (ack.Error == nil || ack.Error.ErrorCode != codeWrongLastSequenceConstant):
			return ack, nil
		case err == nil: // 10164
			reached = true
		case errors.Is(err, nats.ErrNoResponders):
		case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
			reached = true
		default:
			return ack, err
		}
		select {
		case <-ctx.Done():
			if err == nil {
				return ack, nil // the 10164 answer: resolve looks the subject up
			}
			if reached && errors.Is(err, nats.ErrNoResponders) {
				return pubAck{}, fmt.Errorf("streams: no answer to any attempt (an earlier one may have been stored): %w", context.DeadlineExceeded)
			}
			return pubAck{}, err
		case <-time.After(resendPause):
		}
	}
}

// publishBatch publishes events of one subject as one atomic batch, the expected sequence checked on the
// first message only (a later check would see the batch's own messages).
func (s *Store) publishBatch(ctx context.Context, subject string, expectedSeq uint64, events []Event) (pubAck, error) {
	msgs := make([]batchMsg, len(events))
	for i := range events {
		msgs[i] = batchMsg{subject: subject, expectedSeq: expectedSeq, check: i == 0, event: &events[i]}
	}
	return s.publishAtomic(ctx, msgs)
}

// batchMsg is one message of an atomic batch: an event for a subject, with or without an expected last
// subject sequence.
type batchMsg struct {
	subject     string
	expectedSeq uint64
	check       bool // send Nats-Expected-Last-Subject-Sequence: expectedSeq
	event       *Event
}

// publishAtomic publishes msgs as one atomic batch: every message but the last as a core publish without a
// reply (the server acks staged messages only when a reply subject is set), the last with Nats-Batch-Commit
// as a request whose reply is the batch's PubAck.
func (s *Store) publishAtomic(ctx context.Context, msgs []batchMsg) (pubAck, error) {
	// A batch whose commit is never sent stays open on the server (and counts against its limit of open
	// batches) until it is abandoned 10 s later: do not start one with a context that is already done.
	if err := ctx.Err(); err != nil {
		return pubAck{}, definiteError{err}
	}
	select {
	case s.inflight <- struct{}{}:
	case <-ctx.Done():
		return pubAck{}, definiteError{fmt.Errorf("streams: waiting for a batch slot: %w", ctx.Err())}
	}
	defer func() { <-s.inflight }()

	batchID := nuid.Next()
	// One header map and one value slice per header, reused for every message: nats.Conn encodes the
	// headers during PublishMsg, so changing them afterwards does not affect the message already sent.
	var (
		idValue      = []string{""}
		typeValue    = []string{""}
		versionValue = []string{""}
		seqValue     = []string{""}
		expectValue  = []string{""}
		hdr          = make(nats.Header, 8)
		msg          = nats.Msg{Header: hdr}
		prevExtra    map[string]string
	)
	hdr[hdrBatchID] = []string{batchID}
	hdr[hdrBatchSeq] = seqValue
	// The commit id and size again under our own names: a mirror strips the
	// Nats-Batch-* headers, and a copy promoted mid-replication must still
	// show a commit it holds only part of (CommitOf, Promote).
	hdr[HeaderCommit] = []string{batchID}
	hdr[HeaderCommitSeq] = seqValue
	hdr[HeaderCommitCount] = []string{strconv.Itoa(len(msgs))}
	hdr[nats.MsgIdHdr] = idValue
	hdr[HeaderEventType] = typeValue
	hdr[HeaderEventVersion] = versionValue
	for i := range msgs {
		m, e := &msgs[i], msgs[i].event
		for k := range prevExtra {
			delete(hdr, k)
		}
		for k, v := range e.Header {
			hdr[k] = []string{v}
		}
		prevExtra = e.Header
		if m.check {
			expectValue[0] = strconv.FormatUint(m.expectedSeq, 10)
			hdr[hdrExpectedSubj] = expectValue
		} else {
			delete(hdr, hdrExpectedSubj)
		}
		idValue[0], typeValue[0] = e.ID, e.Type
		versionValue[0] = strconv.Itoa(e.Version)
		seqValue[0] = strconv.Itoa(i + 1)
		msg.Subject, msg.Data = m.subject, e.Data
		if i == len(msgs)-1 {
			hdr[hdrBatchCommit] = []string{"1"}
			ack, err := s.request(ctx, &msg)
			if err == nil && ack.Error == nil && (ack.Batch != batchID || ack.Count != len(msgs)) {
				err = fmt.Errorf("streams: unexpected batch ack %q/%d for %q/%d", ack.Batch, ack.Count, batchID, len(msgs))
			}
			return ack, err
		}
		if err := s.nc.PublishMsg(&msg); err != nil {
			// The commit was never sent, so the server will abandon the batch: nothing is stored.
			return pubAck{}, definiteError{fmt.Errorf("streams: publish batch message %d: %w", i+1, err)}
		}
	}
	panic("unreachable")
}

// request publishes m with a reply subject and decodes the PubAck.
func (s *Store) request(ctx context.Context, m *nats.Msg) (pubAck, error) {
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	resp, err := s.nc.RequestMsgWithContext(ctx, m)
	if err != nil {
		return pubAck{}, err
	}
	var ack pubAck
	if err := json.Unmarshal(resp.Data, &ack); err != nil {
		return pubAck{}, fmt.Errorf("streams: decode pub ack %q: %w", resp.Data, err)
	}
	if ack.Error == nil && ack.Stream != s.name {
		return pubAck{}, fmt.Errorf("streams: pub ack from stream %q, want %q", ack.Stream, s.name)
	}
	return ack, nil
}

// definiteError marks a failure after which the events are known not to be stored.
type definiteError struct{ error }

func (e definiteError) Unwrap() error { return e.error }

// resolve turns a failed publish into Append's result. A transport failure (timeout, no responders, closed
// connection) or a conflict may hide a successful earlier attempt, so it looks at the pool's first message
// after expectedSeq: if that is our first event (and the message len(events)-1 later is our last), the
// append is stored.
func (s *Store) resolve(ctx context.Context, pool string, expectedSeq uint64, events []Event, pubErr error) (uint64, error) {
	if _, ok := pubErr.(definiteError); ok {
		return 0, pubErr
	}
	if errors.Is(pubErr, nats.ErrNoResponders) {
		// Nothing was subscribed to take the message (no stream leader, in
		// an election): it was dropped, not stored. No lookup, which would
		// only wait out the same election.
		return 0, fmt.Errorf("streams: append to %s: no stream leader answering, nothing stored: %w", pool, pubErr)
	}
	code, isAPI := apiErrorCode(pubErr)
	switch {
	case !isAPI, isConflictCode(code), code == codeBatchDuplicateMsgID:
	case code == codeBatchTooLarge:
		return 0, fmt.Errorf("%w: %w", ErrBatchTooLarge, pubErr)
	default:
		// Any other server answer rejected the whole append: nothing was stored.
		return 0, fmt.Errorf("streams: append to %s: %w", pool, pubErr)
	}
	// The caller's context may be what failed: look up with a fresh timeout.
	lookupCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.timeout)
	defer cancel()
	lastSeq, found, err := s.findAppend(lookupCtx, s.prefix+pool, expectedSeq, events)
	switch {
	case err != nil:
		return 0, fmt.Errorf("%w: append to %s: %w (lookup failed: %v)", ErrUnknownOutcome, pool, pubErr, err)
	case found == appendStored:
		return lastSeq, nil
	case found == appendSuperseded:
		// Another event follows expectedSeq: ours cannot be stored later, the expected-sequence check forbids it.
		return 0, fmt.Errorf("%w: append to %s after seq %d: %w", ErrConflict, pool, expectedSeq, pubErr)
	case !isAPI:
		// Nothing follows expectedSeq yet, but the request may still be in flight and be stored later.
		return 0, fmt.Errorf("%w: append to %s: %w", ErrUnknownOutcome, pool, pubErr)
	case isConflictCode(code):
		// expectedSeq is ahead of the subject's last sequence.
		return 0, fmt.Errorf("%w: append to %s after seq %d: %w", ErrConflict, pool, expectedSeq, pubErr)
	default:
		// The IDs are in the dedupe window but not right after expectedSeq: they were reused.
		return 0, fmt.Errorf("streams: append to %s: event id already stored elsewhere: %w", pool, pubErr)
	}
}

// appendState is what findAppend learnt about the position after expectedSeq.
type appendState int

const (
	appendAbsent     appendState = iota // no message after expectedSeq on the subject
	appendStored                        // our events follow expectedSeq
	appendSuperseded                    // someone else's event follows expectedSeq
)

// findAppend reports whether events are stored on subject right after expectedSeq.
func (s *Store) findAppend(ctx context.Context, subject string, expectedSeq uint64, events []Event) (uint64, appendState, error) {
	first, err := s.getMsg(ctx, msgGetRequest{Seq: expectedSeq + 1, NextFor: subject})
	if err != nil {
		return 0, appendAbsent, err
	}
	if first == nil {
		return 0, appendAbsent, nil
	}
	if first.msgID() != events[0].ID {
		return 0, appendSuperseded, nil
	}
	lastSeq := first.Seq + uint64(len(events)) - 1
	if len(events) == 1 {
		return lastSeq, appendStored, nil
	}
	last, err := s.getMsg(ctx, msgGetRequest{Seq: lastSeq})
	if err != nil {
		return 0, appendAbsent, err
	}
	if last == nil || last.Subject != subject || last.msgID() != events[len(events)-1].ID {
		return 0, appendAbsent, fmt.Errorf("first event stored at %d but last event not at %d", first.Seq, lastSeq)
	}
	return lastSeq, appendStored, nil
}

// validateAppend checks Append's arguments before anything is sent.
func validateAppend(pool string, events []Event) error {
	if !capacity.ValidID(pool) {
		return invalidf("pool %q: want [A-Za-z0-9_-]{1,64}", pool)
	}
	switch {
	case len(events) == 0:
		return invalidf("no events")
	case len(events) > maxBatch:
		return fmt.Errorf("%w: %d events, at most %d", ErrBatchTooLarge, len(events), maxBatch)
	}
	var ids map[string]struct{}
	if len(events) > 1 {
		ids = make(map[string]struct{}, len(events))
	}
	for i := range events {
		e := &events[i]
		if e.ID == "" || len(e.ID) > maxIDLen || !validHeaderValue(e.ID) {
			return invalidf("event %d: id %q", i, e.ID)
		}
		if e.Type == "" || !validHeaderValue(e.Type) {
			return invalidf("event %d: type %q", i, e.Type)
		}
		if ids != nil {
			if _, dup := ids[e.ID]; dup {
				return invalidf("event %d: id %q repeated in one append", i, e.ID)
			}
			ids[e.ID] = struct{}{}
		}
		for k, v := range e.Header {
			if !validHeaderKey(k) || !validHeaderValue(v) {
				return invalidf("event %d: header %q", i, k)
			}
		}
	}
	return nil
}

// validHeaderKey accepts printable ASCII keys without ':' that the store does not set itself.
func validHeaderKey(k string) bool {
	if k == "" || strings.HasPrefix(strings.ToLower(k), "nats-") ||
		strings.EqualFold(k, HeaderEventType) || strings.EqualFold(k, HeaderEventVersion) {
		return false
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; c <= ' ' || c >= 0x7f || c == ':' {
			return false
		}
	}
	return true
}

// validHeaderValue rejects line breaks, which would corrupt the header block.
func validHeaderValue(v string) bool {
	return !strings.ContainsAny(v, "\r\n")
}
