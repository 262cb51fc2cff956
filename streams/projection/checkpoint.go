package projection

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// DefaultCheckpointBucket is the object store bucket of read-model
// checkpoints when the deployment does not choose one.
const DefaultCheckpointBucket = "capacity_views"

// State is the folded state of the models a Runner feeds, which it can save
// as a checkpoint and restore from one (*views.Models is a State).
type State interface {
	// BeginCheckpoint begins a checkpoint of the state and returns the
	// stream sequence it reflects and write, which encodes it into w. The
	// Runner calls BeginCheckpoint from its own goroutine, between events
	// (so the last message it applied is the checkpoint's), and write once,
	// on a goroutine of its own while the handler goes on applying events:
	// write must be safe to run concurrently with the handler, and must not
	// hold the handler up for long. A checkpoint that reflects some events
	// after the sequence is fine as long as loading it and applying the
	// stream after the sequence gives the state a full replay would (the
	// handler ignores what the state holds already).
	BeginCheckpoint() (uint64, func(w io.Writer) error, error)
	// ReadCheckpoint replaces the state with the one read from r, to its
	// end, and returns the stream sequence it reflects; on error the state
	// is unchanged.
	ReadCheckpoint(r io.Reader) (uint64, error)
	// Reset empties the state.
	Reset()
}

// Checkpoints keeps read-model checkpoints in a JetStream object store
// bucket, one object per event stream. An object store, not a KV bucket:
// a checkpoint grows with the pools and reservations the models hold, far
// past a message's max payload (1 MiB on a stock server), and the object
// store chunks it. A load reads the chunks straight from the bucket's
// stream (readObject) and relies on the checkpoint's own CRC-32C, not on
// the object's SHA-256 digest.
type Checkpoints struct {
	js     jetstream.JetStream
	obs    jetstream.ObjectStore
	bucket string
	spool  string // directory of checkpoints being saved; "" for os.TempDir
}

// Checkpoint metadata keys, stored with the object.
const (
	metaSeq         = "seq"            // stream sequence the checkpoint reflects
	metaCreated     = "stream_created" // the stream's creation time, RFC 3339
	metaLastSeq     = "last_msg_seq"   // the last message folded in: its sequence,
	metaLastSubject = "last_msg_subject"
	metaLastID      = "last_msg_id" // and Nats-Msg-Id
	// The last message handed to the models when the checkpoint's encoding
	// ended (absent from checkpoints of earlier builds): the checkpoint is
	// fuzzy, and its pools may hold events up to this one.
	metaEndSeq     = "end_msg_seq"
	metaEndSubject = "end_msg_subject"
	metaEndID      = "end_msg_id"
)

// NewCheckpoints creates the bucket if needed (file storage, the given
// replicas) and returns Checkpoints on it.
func NewCheckpoints(ctx context.Context, js jetstream.JetStream, bucket string, replicas int) (*Checkpoints, error) {
	obs, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket:      bucket,
		Description: "capacityd read-model checkpoints: the folded pools at a stream sequence, one object per event stream",
		Storage:     jetstream.FileStorage,
		Replicas:    max(replicas, 1),
	})
	if err != nil {
		return nil, fmt.Errorf("projection: checkpoint bucket %s: %w", bucket, err)
	}
	return &Checkpoints{js: js, obs: obs, bucket: bucket}, nil
}

// SpoolIn makes checkpoints being saved wait in a file in dir (the data
// directory, which one process holds) instead of os.TempDir, which may be
// memory (tmpfs). It removes the files a killed process left there.
func (c *Checkpoints) SpoolIn(dir string) {
	c.spool = dir
	left, _ := filepath.Glob(filepath.Join(dir, spoolPattern))
	for _, f := range left {
		os.Remove(f)
	}
}

// spoolPattern names spool files (os.CreateTemp, filepath.Glob).
const spoolPattern = "capacityd-checkpoint-*.tmp"

// Bucket returns the bucket's name.
func (c *Checkpoints) Bucket() string { return c.bucket }

// Info returns the stored checkpoint's object info (its size, its metadata);
// jetstream.ErrObjectNotFound if there is none.
func (c *Checkpoints) Info(ctx context.Context, stream string) (*jetstream.ObjectInfo, error) {
	return c.obs.GetInfo(ctx, stream)
}

// checkpointMeta is what a checkpoint's object says about it.
type checkpointMeta struct {
	seq     uint64
	created time.Time
	last    lastMsg // the message at or before seq the state was at when the checkpoint began
	end     lastMsg // the last message handed to the state when its encoding ended; zero if not known
}

func (m checkpointMeta) encode() map[string]string {
	md := map[string]string{
		metaSeq:         strconv.FormatUint(m.seq, 10),
		metaCreated:     m.created.UTC().Format(time.RFC3339Nano),
		metaLastSeq:     strconv.FormatUint(m.last.seq, 10),
		metaLastSubject: m.last.subject,
		metaLastID:      m.last.id,
	}
	if m.end.seq > 0 {
		md[metaEndSeq], md[metaEndSubject], md[metaEndID] = strconv.FormatUint(m.end.seq, 10), m.end.subject, m.end.id
	}
	return md
}

func decodeMeta(md map[string]string) (checkpointMeta, error) {
	var m checkpointMeta
	var err1, err2, err3, err4 error
	m.seq, err1 = strconv.ParseUint(md[metaSeq], 10, 64)
	m.created, err2 = time.Parse(time.RFC3339Nano, md[metaCreated])
	m.last.seq, err3 = strconv.ParseUint(md[metaLastSeq], 10, 64)
	m.last.subject, m.last.id = md[metaLastSubject], md[metaLastID]
	if v, ok := md[metaEndSeq]; ok {
		m.end.seq, err4 = strconv.ParseUint(v, 10, 64)
		m.end.subject, m.end.id = md[metaEndSubject], md[metaEndID]
	}
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return m, fmt.Errorf("metadata %v: %w", md, err)
	}
	return m, nil
}

// stored returns the stream's checkpoint object and its metadata;
// jetstream.ErrObjectNotFound if there is none.
func (c *Checkpoints) stored(ctx context.Context, stream string) (*jetstream.ObjectInfo, checkpointMeta, error) {
	info, err := c.obs.GetInfo(ctx, stream)
	if err != nil {
		return nil, checkpointMeta{}, err
	}
	meta, err := decodeMeta(info.Metadata)
	return info, meta, err
}

// save stores data as the stream's checkpoint unless the stored one is of
// the same stream and at meta.seq or later: never backwards (instances of
// a region share the object, and any of them may be ahead).
func (c *Checkpoints) save(ctx context.Context, stream string, meta checkpointMeta, data io.Reader) (bool, error) {
	if _, old, err := c.stored(ctx, stream); err == nil && old.created.Equal(meta.created) && old.seq >= meta.seq {
		return false, nil
	}
	_, err := c.obs.Put(ctx, jetstream.ObjectMeta{
		Name:        stream,
		Description: "read models of " + stream + " at sequence " + strconv.FormatUint(meta.seq, 10),
		Metadata:    meta.encode(),
	}, c.paced(ctx, data))
	if err != nil {
		return false, fmt.Errorf("projection: save checkpoint of %s at %d: %w", stream, meta.seq, err)
	}
	return true, nil
}

// loadCheckpoint restores the state from the stream's checkpoint, if there
// is one the stream vouches for, and returns the sequence it reflects. Any
// doubt (no checkpoint, unreadable metadata, another stream of the same
// name, a checkpoint ahead of the stream or whose last message is not the
// stream's, a corrupt or unknown body) returns 0 and why: the caller
// rebuilds from sequence 1. A checkpoint is never trusted over the stream.
func (r *Runner) loadCheckpoint(ctx context.Context) (uint64, string) {
	cp, state := r.opts.checkpoints, r.opts.state
	ctx, cancel := context.WithTimeout(ctx, r.opts.checkpointTimeout)
	defer cancel()
	object, meta, err := cp.stored(ctx, r.stream)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return 0, "no checkpoint"
	}
	if err != nil {
		return 0, fmt.Sprintf("checkpoint unreadable: %v", err)
	}
	stream, err := r.js.Stream(ctx, r.stream)
	if err != nil {
		return 0, fmt.Sprintf("stream %s: %v", r.stream, err)
	}
	info := stream.CachedInfo()
	switch {
	case !info.Created.Equal(meta.created):
		return 0, fmt.Sprintf("checkpoint of another stream %s (created %v, this one %v)", r.stream, meta.created, info.Created)
	case meta.seq > info.State.LastSeq:
		return 0, fmt.Sprintf("checkpoint at %d ahead of the stream's last sequence %d", meta.seq, info.State.LastSeq)
	case meta.last.seq > meta.seq:
		return 0, fmt.Sprintf("checkpoint's last message %d after its position %d", meta.last.seq, meta.seq)
	case meta.end.seq > info.State.LastSeq:
		return 0, fmt.Sprintf("checkpoint's pools reach %d, ahead of the stream's last sequence %d", meta.end.seq, info.State.LastSeq)
	case meta.end.seq > 0 && meta.end.seq < meta.last.seq:
		return 0, fmt.Sprintf("checkpoint's end message %d before its last message %d", meta.end.seq, meta.last.seq)
	}
	// The stream vouches for the messages the state holds: the last at the
	// checkpoint's position and, the checkpoint being fuzzy, the last its
	// pools may hold. A stream that lost its tail and was written again
	// has other messages there.
	for _, msg := range []struct {
		what string
		lastMsg
	}{{"last", meta.last}, {"end", meta.end}} {
		if msg.seq == 0 || msg.what == "end" && msg.lastMsg == meta.last {
			continue
		}
		got, err := stream.GetMsg(ctx, msg.seq)
		if err != nil {
			return 0, fmt.Sprintf("checkpoint's %s message %d: %v", msg.what, msg.seq, err)
		}
		if got.Subject != msg.subject || got.Header.Get(nats.MsgIdHdr) != msg.id {
			return 0, fmt.Sprintf("checkpoint's %s message %d is %s %q in the checkpoint, %s %q in the stream",
				msg.what, msg.seq, msg.subject, msg.id, got.Subject, got.Header.Get(nats.MsgIdHdr))
		}
	}
	data, err := cp.readObject(ctx, object) // the body of the metadata checked above
	if err != nil {
		return 0, fmt.Sprintf("checkpoint body: %v", err)
	}
	body := bytes.NewBuffer(data) // the state keeps the buffer (Bytes), no copy
	pos, err := state.ReadCheckpoint(body)
	if err != nil {
		return 0, fmt.Sprintf("checkpoint body: %v", err)
	}
	if pos != meta.seq {
		state.Reset()
		return 0, fmt.Sprintf("checkpoint body at %d, its metadata at %d", pos, meta.seq)
	}
	r.lastMsg = meta.last
	r.noteSeen(meta.last)
	r.noteSeen(meta.end) // the pools may hold events up to it
	r.created = info.Created
	return pos, ""
}

// lastMsg identifies the last message folded into the state.
type lastMsg struct {
	seq     uint64
	subject string
	id      string
}

// noteSeen records msg as handed to the state, unless a later one was.
func (r *Runner) noteSeen(msg lastMsg) {
	r.seenMu.Lock()
	if msg.seq > r.seen.seq {
		r.seen = msg
	}
	r.seenMu.Unlock()
}

// seenMsg returns the last message handed to the state.
func (r *Runner) seenMsg() lastMsg {
	r.seenMu.Lock()
	defer r.seenMu.Unlock()
	return r.seen
}

// checkpoint begins a checkpoint of the state now, on the runner's
// goroutine, then encodes and stores it: on a goroutine of the runner's
// own (r.wg) while the runner goes on applying events, or before returning
// if wait (at shutdown, when nothing is applied any more). At most one
// checkpoint is in flight, from its beginning to its save; while one is, a
// background checkpoint is skipped and a waiting one waits for it.
func (r *Runner) checkpoint(ctx context.Context, wait bool) {
	if r.checkpointed() && (!wait || len(r.saving) > 0) {
		return // (at shutdown, the one in flight may yet fail)
	}
	select {
	case <-r.saving: // free
	default:
		if !wait {
			r.retryAt = time.Now().Add(100 * time.Millisecond)
			return
		}
		select {
		case <-r.saving:
		case <-ctx.Done():
			return
		}
	}
	if r.checkpointed() { // the one that was in flight holds everything
		r.saving <- struct{}{}
		return
	}
	// Encoded into a file, not memory: at a million pools a checkpoint is
	// hundreds of MB, which in memory raised the process's peak by several
	// times that (the buffer, its copies in flight to the server, and the
	// garbage collector's headroom over both). The file is read back at
	// the pace the server stores it (Checkpoints.paced).
	start := time.Now()
	spool, err := os.CreateTemp(r.opts.checkpoints.spool, spoolPattern)
	var pos uint64
	var write func(io.Writer) error
	if err == nil {
		// Before BeginCheckpoint: a checkpoint begun must be written.
		if pos, write, err = r.opts.state.BeginCheckpoint(); err != nil {
			discard(spool)
		}
	}
	if err != nil {
		r.saving <- struct{}{}
		r.retryAt = time.Now().Add(r.opts.checkpointInterval)
		r.cpFailures.Add(1)
		r.opts.logger.Error().Err(err).Str("durable", r.durable).Msg("projection: begin checkpoint")
		return
	}
	// Nothing was applied since BeginCheckpoint: the last message applied
	// is the checkpoint's.
	meta := checkpointMeta{seq: pos, created: r.created, last: r.lastMsg}
	r.savedSeq, r.sinceSave, r.savedAt = pos, 0, time.Now()
	r.cpRedo.Store(false)
	save := func() {
		defer func() { r.saving <- struct{}{} }()
		defer discard(spool)
		size, err := encode(spool, write)
		if err != nil {
			r.cpRedo.Store(true)
			r.cpFailures.Add(1)
			r.opts.logger.Error().Err(err).Str("durable", r.durable).Uint64("seq", pos).Msg("projection: encode checkpoint")
			return
		}
		meta.end = r.seenMsg() // every event the pools hold is at or below it
		encoded := time.Since(start)
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.opts.checkpointTimeout)
		defer cancel()
		stored, err := r.opts.checkpoints.save(sctx, r.stream, meta, spool)
		if err != nil {
			r.cpRedo.Store(true)
			r.cpFailures.Add(1)
			r.opts.logger.Warn().Err(err).Str("durable", r.durable).Msg("projection: checkpoint not saved")
			return
		}
		if stored {
			r.cpSaved.Store(pos)
			r.opts.logger.Info().Str("durable", r.durable).Uint64("seq", pos).Int64("bytes", size).
				Dur("encode", encoded).Dur("total", time.Since(start)).Msg("projection: checkpoint saved")
		}
	}
	if wait {
		save()
		return
	}
	r.wg.Go(save)
}

// checkpointed reports whether the last checkpoint begun holds everything
// applied: nothing new since, and it was not lost (its encoding or save
// failed, cpRedo).
func (r *Runner) checkpointed() bool {
	return r.opts.checkpoints == nil || r.position.Load() == r.savedSeq && !r.cpRedo.Load()
}

// checkpointDue reports whether enough has been applied since the last
// checkpoint, in events or in time, to write another.
func (r *Runner) checkpointDue() bool {
	if r.checkpointed() {
		return false
	}
	if time.Now().Before(r.retryAt) {
		return false
	}
	return r.sinceSave >= r.opts.checkpointEvery || time.Since(r.savedAt) >= r.opts.checkpointInterval
}

// checkpointDeadline is when the next time-based checkpoint is due.
func (r *Runner) checkpointDeadline() time.Time {
	due := r.savedAt.Add(r.opts.checkpointInterval)
	if due.Before(r.retryAt) {
		return r.retryAt
	}
	return due
}

// Delete removes stream's checkpoint, if any: the models it holds were
// folded from a copy of the stream set aside (a diverged tail).
func (c *Checkpoints) Delete(ctx context.Context, stream string) error {
	err := c.obs.Delete(ctx, stream)
	if err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
		return fmt.Errorf("projection: delete checkpoint of %s: %w", stream, err)
	}
	return nil
}

// encode writes a checkpoint begun into the spool file f with write and
// rewinds f; it returns the checkpoint's size.
func encode(f *os.File, write func(io.Writer) error) (int64, error) {
	err := write(f)
	var size int64
	if err == nil {
		size, err = f.Seek(0, io.SeekCurrent)
	}
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	return size, err
}

// discard closes and removes a spool file.
func discard(f *os.File) {
	f.Close()
	os.Remove(f.Name())
}
