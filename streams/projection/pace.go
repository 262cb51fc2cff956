package projection

import (
	"context"
	"io"
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
