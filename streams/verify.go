package streams

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// CopyDigest is one copy of a region's stream read whole: a digest of
// each message by sequence (subject, id, type, commit headers and body).
type CopyDigest struct {
	Domain  string
	Mirror  bool // still a mirror (not the head of any chain)
	LastSeq uint64
	Lag     uint64 // as the mirror reports it
	digests map[uint64][32]byte
	order   []uint64 // sequences in the order read
}

// ReadCopy reads every message of region's stream in domain over nc.
func ReadCopy(ctx context.Context, nc *nats.Conn, domain, region string) (*CopyDigest, error) {
	return ReadStream(ctx, nc, domain, StreamName(region))
}

// ReadStream reads every message of the stream named name in domain over
// nc (a copy of a region's stream set aside, say).
func ReadStream(ctx context.Context, nc *nats.Conn, domain, name string) (*CopyDigest, error) {
	return readStream(ctx, nc, domain, name, nil)
}

// ReadCopyEach is ReadCopy that also hands every message, decoded
// (Decode), to each, in the order read: verify folds the copy with it.
func ReadCopyEach(ctx context.Context, nc *nats.Conn, domain, region string, each func(Recorded, error)) (*CopyDigest, error) {
	return readStream(ctx, nc, domain, StreamName(region), each)
}

func readStream(ctx context.Context, nc *nats.Conn, domain, name string, each func(Recorded, error)) (*CopyDigest, error) {
	js, err := jetstream.NewWithDomain(nc, domain)
	if err != nil {
		return nil, err
	}
	stream, err := js.Stream(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("streams: %s in domain %s: %w", name, domain, err)
	}
	info := stream.CachedInfo()
	c := &CopyDigest{Domain: domain, Mirror: info.Config.Mirror != nil, LastSeq: info.State.LastSeq, digests: map[uint64][32]byte{}}
	if info.Mirror != nil {
		c.Lag = info.Mirror.Lag
	}
	if info.State.Msgs == 0 {
		return c, nil
	}
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, err
	}
	for {
		batch, err := cons.Fetch(500, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return nil, err
		}
		n := 0
		var last uint64
		for msg := range batch.Messages() {
			n++
			md, err := msg.Metadata()
			if err != nil {
				return nil, err
			}
			seq := md.Sequence.Stream
			h := sha256.New()
			for _, part := range []string{msg.Subject(), msg.Headers().Get(nats.MsgIdHdr), msg.Headers().Get(HeaderEventType),
				msg.Headers().Get(HeaderCommit), msg.Headers().Get(HeaderCommitSeq), msg.Headers().Get(HeaderCommitCount)} {
				h.Write([]byte(part))
				h.Write([]byte{0})
			}
			h.Write(msg.Data())
			var sum [32]byte
			copy(sum[:], h.Sum(nil))
			c.digests[seq] = sum
			c.order = append(c.order, seq)
			c.LastSeq = max(c.LastSeq, seq) // read past the info's: the stream grew meanwhile
			if each != nil {
				each(Decode(msg.Subject(), seq, md.Timestamp, msg.Headers(), msg.Data()))
			}
			last = seq
			if md.NumPending == 0 {
				return c, nil
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return nil, err
		}
		if n == 0 || last >= info.State.LastSeq {
			return c, nil
		}
	}
}

// Difference is how a copy differs from the head.
type Difference struct {
	Domain     string
	Missing    []uint64 // sequences the head has (up to the copy's last) and the copy lacks
	OutOfOrder int      // messages read out of sequence order
	Mismatch   []uint64 // same sequence, different content
	Beyond     []uint64 // sequences past the head's last: a diverged tail
	Lag        uint64   // head's last sequence minus the copy's
}

// Prefix reports whether the copy is a prefix of the head.
func (d Difference) Prefix() bool {
	return len(d.Missing) == 0 && d.OutOfOrder == 0 && len(d.Mismatch) == 0 && len(d.Beyond) == 0
}

// Compare compares copy with head message by message.
func Compare(head, copy *CopyDigest) Difference {
	d := Difference{Domain: copy.Domain}
	if head.LastSeq > copy.LastSeq {
		d.Lag = head.LastSeq - copy.LastSeq
	}
	var prev uint64
	for _, seq := range copy.order {
		if seq <= prev {
			d.OutOfOrder++
		}
		prev = seq
		want, ok := head.digests[seq]
		switch {
		case !ok && seq > head.LastSeq:
			d.Beyond = append(d.Beyond, seq)
		case !ok:
			// The head lacks a message the copy has: head sequences are never reused, so a gap in the head.
			d.Mismatch = append(d.Mismatch, seq)
		case want != copy.digests[seq]:
			d.Mismatch = append(d.Mismatch, seq)
		}
	}
	for seq := range head.digests {
		if seq <= copy.LastSeq {
			if _, ok := copy.digests[seq]; !ok {
				d.Missing = append(d.Missing, seq)
			}
		}
	}
	slices.Sort(d.Missing)
	return d
}

// Order returns the sequences read, in the order read.
func (c *CopyDigest) Order() []uint64 { return c.order }
