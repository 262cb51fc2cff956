// Package groupsync makes the writes of an embedded nats-server durable with
// one fsync shared by every writer waiting at the time: group commit, the way
// a database shares one WAL flush among the transactions committing together.
//
// Why: with SyncAlways the server fsyncs after every message, one at a time,
// on the stream's single writing goroutine, so an R1 stream on one disk
// tops out at one message per fsync (about 3k/s on the project's machine)
// however many pools write. Atomic batches share a sync but each costs a
// fixed ~10 ms staging store on disk. Instead the server runs with lazy
// fsync (it writes every message to its block file before it acknowledges
// it: fs.fip, "flush in place", on R1 file streams), and the caller, after
// the server's ack and before it answers anyone, waits for a round of
// Syncer: an fsync of the stream's block files that started after the ack.
// One round covers every message acknowledged before it started.
//
// What it relies on, checked on nats-server 2.15 (filestore.go): a stream's
// messages live in <store>/jetstream/<account>/streams/<stream>/msgs/<n>.blk,
// written in place (write(2) before the ack) to the highest-numbered block;
// a new block is a new file in that directory; state files (index.db) are
// rebuilt from the blocks when they lag. A round fsyncs the newest block
// (and, when the server moved to a new block since the last round, the
// previous one and the directory), after checking the file it holds is
// still the one at that path (a stream deleted and created again starts
// over at 1.blk).
//
// What it does not give: the server hands a message to consumers and
// mirrors as soon as it is written, so a reader can see an event up to one
// round (well under a millisecond to a few) before it is on disk. Callers
// are only answered after the round.
package groupsync

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ErrStopped is returned to waiters when the Syncer stops before their round.
var ErrStopped = errors.New("groupsync: stopped")

// StreamDir returns where an embedded server keeps a stream's files: its
// JetStream store directory (server.JetStreamConfig().StoreDir, the
// configured store directory plus "jetstream"), the account ("$G" without
// accounts) and the stream's name.
func StreamDir(jsDir, account, stream string) string {
	return filepath.Join(jsDir, account, "streams", stream)
}

// Syncer fsyncs one stream's files in rounds, each shared by every Wait
// that arrived before it started. Create it with New and Stop it once.
//
// Who runs a round: a Wait that finds no round running runs it itself, on
// its own goroutine, so the common case hands nothing to another
// goroutine (under load every hand-off waits for a processor, about 0.8 ms
// a round at 2,000 appends a second on 2 cores). Waits that arrive while a
// round runs join the next round; the goroutine finishing a round hands
// the next one, if any, to the Syncer's own goroutine, which runs rounds
// until none is waiting. One goroutine at a time leads (runs rounds and
// owns the files below): the one that set leading, until it clears it.
type Syncer struct {
	dir  string // the stream's directory
	msgs string // its msgs directory

	mu      sync.Mutex
	next    *round // the round waiters join; nil when none is waiting
	leading bool   // a goroutine runs rounds; it takes next before it stops
	stopped bool
	rounds  uint64         // rounds run
	inline  sync.WaitGroup // Waits running a round themselves

	kick chan struct{} // hands the lead to run; sent only by the leader
	stop chan struct{}
	done chan struct{}

	// observe, if set, is told how long each round took (OnRound).
	observe *atomic.Pointer[func(time.Duration)]

	// Owned by the leader.
	cur    *os.File // the newest block file
	curIdx uint64
}

type round struct {
	done chan struct{}
	err  error
}

// New starts a Syncer for the stream whose files are in dir (see StreamDir).
// The directory need not exist yet: the first round looks for it.
func New(dir string) *Syncer {
	return newSyncer(dir, new(atomic.Pointer[func(time.Duration)]))
}

func newSyncer(dir string, observe *atomic.Pointer[func(time.Duration)]) *Syncer {
	s := &Syncer{
		observe: observe,
		dir:     dir,
		msgs:    filepath.Join(dir, "msgs"),
		kick:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	go s.run()
	return s
}

// Wait returns once everything the server had written to the stream before
// Wait was called is on disk, or with the round's error, or ctx's. A Wait
// that runs the round itself finishes it whatever ctx says.
func (s *Syncer) Wait(ctx context.Context) error {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return ErrStopped
	}
	if !s.leading {
		// No round running, so none started before this call: run one.
		s.leading = true
		s.inline.Add(1)
		s.mu.Unlock()
		defer s.inline.Done()
		err := s.syncRound()
		s.handOff()
		return err
	}
	r := s.next
	if r == nil {
		r = &round{done: make(chan struct{})}
		s.next = r
	}
	s.mu.Unlock()
	select {
	case <-r.done:
		return r.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// handOff ends a Wait's lead: the round waiting meanwhile, if any, goes to
// the Syncer's goroutine (or, once stopped, is answered ErrStopped).
func (s *Syncer) handOff() {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.next == nil:
		s.leading = false
	case s.stopped:
		s.failNext()
		s.leading = false
	default:
		s.kick <- struct{}{} // never blocks: only the leader sends, and run took the last one
	}
}

// failNext answers the waiting round, if any, ErrStopped: its waiters'
// writes may be on disk already, but no round started after them, so they
// are not promised. The caller holds mu.
func (s *Syncer) failNext() {
	if r := s.next; r != nil {
		s.next = nil
		r.err = ErrStopped
		close(r.done)
	}
}

// syncRound runs one round and counts it.
func (s *Syncer) syncRound() error {
	begin := time.Now()
	err := s.syncOnce()
	if f := s.observe.Load(); f != nil && err == nil {
		(*f)(time.Since(begin))
	}
	s.mu.Lock()
	s.rounds++
	s.mu.Unlock()
	return err
}

// OnRound has f told how long each later successful round took (its
// fsyncs and the checks of which files to sync), e.g. to feed a histogram:
// a round's duration is what every append waiting for it waits on top of
// the server's ack. f runs on the goroutine that ran the round and must be
// quick.
func (s *Syncer) OnRound(f func(time.Duration)) { s.observe.Store(&f) }

// Rounds returns how many fsync rounds have run.
func (s *Syncer) Rounds() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rounds
}

// Stop ends the Syncer after the rounds in progress; waiters of later
// rounds get ErrStopped.
func (s *Syncer) Stop() {
	s.mu.Lock()
	if !s.stopped {
		s.stopped = true
		close(s.stop)
	}
	s.mu.Unlock()
	<-s.done
	s.inline.Wait() // no Wait leads after stopped is set
	if s.cur != nil {
		s.cur.Close()
		s.cur = nil
	}
}

// run takes the lead when a Wait hands it over and runs rounds until none
// is waiting.
func (s *Syncer) run() {
	defer close(s.done)
	for {
		select {
		case <-s.kick:
		case <-s.stop:
			select {
			case <-s.kick: // handed the lead before the stop: answer the round
				s.mu.Lock()
				s.failNext()
				s.leading = false
				s.mu.Unlock()
			default:
			}
			return
		}
		for {
			s.mu.Lock()
			if s.stopped {
				s.failNext()
			}
			r := s.next
			s.next = nil
			if r == nil {
				s.leading = false
				s.mu.Unlock()
				break
			}
			s.mu.Unlock()
			r.err = s.syncRound()
			close(r.done)
		}
	}
}

// syncOnce makes everything written to the stream so far durable.
func (s *Syncer) syncOnce() error {
	if s.cur == nil {
		if err := s.open(); err != nil {
			return err
		}
	}
	for {
		// Still the file at that path? A stream deleted and made again, or a
		// block the server rewrote, is another file under the same name.
		if same, err := s.stillCurrent(); err != nil {
			return err
		} else if !same {
			if err := s.open(); err != nil {
				return err
			}
			continue
		}
		next := blockPath(s.msgs, s.curIdx+1)
		if _, err := os.Stat(next); err == nil {
			// The server moved on to a new block: finish this one, then the
			// new one's directory entry.
			if err := s.cur.Sync(); err != nil {
				return fmt.Errorf("groupsync: fsync %s: %w", s.cur.Name(), err)
			}
			s.cur.Close()
			s.cur = nil
			f, err := os.Open(next)
			if err != nil {
				return s.open() // gone again already: look afresh
			}
			s.cur, s.curIdx = f, s.curIdx+1
			if err := syncDir(s.msgs); err != nil {
				return err
			}
			continue
		} else if !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("groupsync: %w", err)
		}
		if err := s.cur.Sync(); err != nil {
			return fmt.Errorf("groupsync: fsync %s: %w", s.cur.Name(), err)
		}
		return nil
	}
}

// stillCurrent reports whether the open block is the file now at its path.
func (s *Syncer) stillCurrent() (bool, error) {
	at, err := os.Stat(blockPath(s.msgs, s.curIdx))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("groupsync: %w", err)
	}
	held, err := s.cur.Stat()
	if err != nil {
		return false, fmt.Errorf("groupsync: %w", err)
	}
	return os.SameFile(at, held), nil
}

// open finds the newest block, fsyncs every block (a fresh look may follow
// writes this Syncer never saw) and the directories and metadata that make
// the stream findable after a crash.
func (s *Syncer) open() error {
	if s.cur != nil {
		s.cur.Close()
		s.cur = nil
	}
	entries, err := os.ReadDir(s.msgs)
	if err != nil {
		return fmt.Errorf("groupsync: stream files: %w", err)
	}
	var idxs []uint64
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".blk")
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(name, 10, 64); err == nil {
			idxs = append(idxs, n)
		}
	}
	if len(idxs) == 0 {
		return fmt.Errorf("groupsync: no message blocks in %s", s.msgs)
	}
	newest := idxs[0]
	for _, n := range idxs {
		if n > newest {
			newest = n
		}
		if err := syncFile(blockPath(s.msgs, n)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	for _, name := range []string{"meta.inf", "meta.sum"} {
		if err := syncFile(filepath.Join(s.dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	for _, d := range []string{s.msgs, s.dir, filepath.Dir(s.dir), filepath.Dir(filepath.Dir(s.dir))} {
		if err := syncDir(d); err != nil {
			return err
		}
	}
	f, err := os.Open(blockPath(s.msgs, newest))
	if err != nil {
		return fmt.Errorf("groupsync: %w", err)
	}
	s.cur, s.curIdx = f, newest
	return nil
}

func blockPath(msgs string, idx uint64) string {
	return filepath.Join(msgs, strconv.FormatUint(idx, 10)+".blk")
}

func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("groupsync: fsync %s: %w", path, err)
	}
	return nil
}

func syncDir(path string) error {
	if err := syncFile(path); err != nil {
		return fmt.Errorf("groupsync: directory: %w", err)
	}
	return nil
}

// Set keeps one Syncer per stream of one embedded server, made on first use.
type Set struct {
	jsDir, account string

	mu      sync.Mutex
	syncers map[string]*Syncer
	stopped bool
	observe atomic.Pointer[func(time.Duration)] // shared by every Syncer of the set
}

// NewSet returns an empty Set for the server keeping its JetStream files in
// jsDir (see StreamDir).
func NewSet(jsDir, account string) *Set {
	return &Set{jsDir: jsDir, account: account, syncers: map[string]*Syncer{}}
}

// Wait waits for a round of stream's Syncer (see Syncer.Wait).
func (s *Set) Wait(ctx context.Context, stream string) error {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return ErrStopped
	}
	sy := s.syncers[stream]
	if sy == nil {
		sy = newSyncer(StreamDir(s.jsDir, s.account, stream), &s.observe)
		s.syncers[stream] = sy
	}
	s.mu.Unlock()
	return sy.Wait(ctx)
}

// OnRound is Syncer.OnRound for every Syncer of the set, present and
// future.
func (s *Set) OnRound(f func(time.Duration)) { s.observe.Store(&f) }

// Rounds returns the fsync rounds run so far, over all streams.
func (s *Set) Rounds() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n uint64
	for _, sy := range s.syncers {
		n += sy.Rounds()
	}
	return n
}

// Stop stops every Syncer of the set.
func (s *Set) Stop() {
	s.mu.Lock()
	s.stopped = true
	all := s.syncers
	s.syncers = map[string]*Syncer{}
	s.mu.Unlock()
	for _, sy := range all {
		sy.Stop()
	}
}
