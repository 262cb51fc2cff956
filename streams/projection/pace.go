package projection

import (
	"context"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// paceWindow is how many chunks of a checkpoint may be in flight to the
// server at once (8 MiB at the object store's default 128 KiB chunks).
const paceWindow = 64

// paced returns r read at the pace the bucket's stream stores it. The
// object store's Put publishes each chunk it reads asynchronously, with up
// to 4,000 publishes in flight (nats.go's default, which Put does not let
// a caller change): 500 MB of a checkpoint could wait in the connection's
// and the server's buffers at once, on top of the checkpoint itself. Each
// chunk is one message, so the reader hands out a chunk only while fewer
// than paceWindow of those it handed out are beyond the stream's last
// sequence. Other writers to the bucket only make it lenient. Pacing is
// best effort: where the stream's info cannot be read (an account allowed
// the object store's subjects only), r is read as it comes.
func (c *Checkpoints) paced(ctx context.Context, r io.Reader) io.Reader {
	stream, err := c.js.Stream(ctx, "OBJ_"+c.bucket)
	if err != nil {
		return r
	}
	return &pacedReader{ctx: ctx, stream: stream, r: r, start: stream.CachedInfo().State.LastSeq}
}

// pacedReader is the reader paced returns.
type pacedReader struct {
	ctx    context.Context
	stream jetstream.Stream // nil once its info could not be read: no more pacing
	r      io.Reader
	start  uint64 // the stream's last sequence before the first chunk
	sent   uint64 // chunks handed out (Put publishes each Read as one)
	stored uint64 // chunks known stored
}

func (p *pacedReader) Read(b []byte) (int, error) {
	for wait := time.Millisecond; p.stream != nil && p.sent >= p.stored+paceWindow; wait = min(2*wait, 50*time.Millisecond) {
		info, err := p.stream.Info(p.ctx)
		if err != nil {
			if p.ctx.Err() != nil {
				return 0, p.ctx.Err()
			}
			p.stream = nil
			break
		}
		if last := info.State.LastSeq; last > p.start {
			p.stored = last - p.start
		}
		if p.sent < p.stored+paceWindow {
			break
		}
		select {
		case <-p.ctx.Done():
			return 0, p.ctx.Err()
		case <-time.After(wait):
		}
	}
	n, err := p.r.Read(b)
	if n > 0 {
		p.sent++
	}
	return n, err
}

// readObject returns the checkpoint object info describes whole, read
// chunk by chunk from the bucket's stream into one buffer of its size.
//
// Not ObjectStore.Get: that hashes every chunk with SHA-256 to check the
// object's digest at the end (and passes the bytes through a pipe to
// another goroutine first). At 150-180 MB/s for the hash on this kind of
// CPU, that was over half of a start from a 235 MB checkpoint, and most of
// one at a million events (BenchmarkTimeToReady, CPU profile). The
// checkpoint carries its own CRC-32C over every byte, which the state
// checks on load (views.Models.ReadCheckpoint) at several GB/s: a chunk
// lost, repeated, reordered or damaged fails it as it would fail the
// digest, and the checkpoint is refused.
func (c *Checkpoints) readObject(ctx context.Context, info *jetstream.ObjectInfo) ([]byte, error) {
	if info.NUID == "" || info.Size > math.MaxInt32*8 {
		return nil, jetstream.ErrBadObjectMeta
	}
	data := make([]byte, 0, info.Size)
	if info.Chunks == 0 {
		return data, nil
	}
	stream, err := c.js.Stream(ctx, "OBJ_"+c.bucket)
	if err != nil {
		return nil, err
	}
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{"$O." + c.bucket + ".C." + info.NUID},
	})
	if err != nil {
		return nil, err
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(paceWindow))
	if err != nil {
		return nil, err
	}
	defer it.Stop()
	for range info.Chunks {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return nil, fmt.Errorf("chunk %d of %d: %w", len(data), info.Chunks, err)
		}
		data = append(data, msg.Data()...)
	}
	if uint64(len(data)) != info.Size {
		return nil, fmt.Errorf("%d bytes in %d chunks, the object's size is %d", len(data), info.Chunks, info.Size)
	}
	return data, nil
}
