package lazyfs

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// FS is a mounted lazy filesystem.
type FS struct {
	mountpoint, backing, trash string
	server                     *fuse.Server

	// mu serialises every change to the backing directory with the
	// bookkeeping that can undo it, so a cut never falls between the two.
	mu       sync.Mutex
	crashed  atomic.Bool           // set under mu
	files    map[uint64]*fileState // by backing inode number
	journal  []undo                // metadata operations since the last sync, oldest first
	trashSeq int
	stats    Stats
}

// Stats counts what the FS saw since it was mounted.
type Stats struct {
	Writes, Syncs, MetadataOps int
}

// Loss is what a Crash dropped.
type Loss struct {
	// Undone is how many metadata operations (create, mkdir, remove,
	// rename) were undone.
	Undone int
	// FilesRemoved is how many files vanished because their creation was
	// not durable.
	FilesRemoved int
	// FilesRolledBack is how many files went back to their synced content.
	FilesRolledBack int
	// BytesDropped counts the bytes of removed files, bytes written past a
	// file's synced size, and bytes restored below it.
	BytesDropped int64
	// Files lists what happened to each file, for a report.
	Files []string
}

// Add adds up the losses of several cuts.
func (l Loss) Add(o Loss) Loss {
	return Loss{l.Undone + o.Undone, l.FilesRemoved + o.FilesRemoved, l.FilesRolledBack + o.FilesRolledBack, l.BytesDropped + o.BytesDropped, append(l.Files[:len(l.Files):len(l.Files)], o.Files...)}
}

func (l Loss) String() string {
	return fmt.Sprintf("%d metadata operations undone, %d files removed, %d rolled back, %d bytes dropped",
		l.Undone, l.FilesRemoved, l.FilesRolledBack, l.BytesDropped)
}

// fileState is what a file looked like at its last sync, as far as it
// has changed since: its size then, and the bytes below that size that
// were overwritten or truncated away since (first pre-image wins).
type fileState struct {
	synced int64
	saved  []extent // disjoint, sorted by offset
}

type extent struct {
	off  int64
	data []byte
}

// undo is one metadata operation not yet durable, with what reverses it.
type undo struct {
	op       string // "create", "mkdir", "remove", "rmdir", "rename"
	path     string // the name it created, removed, or renamed to (backing path)
	from     string // rename: the old name
	trash    string // remove, rename over a file: where the old file is kept
	mode     uint32 // rmdir: the directory's mode
	replaced bool   // rename over an empty directory
}

// ErrCrashed is what Crash and Unmount return on an FS already crashed or
// unmounted. Inside the mount, operations after a crash fail with EIO.
var ErrCrashed = errors.New("lazyfs: crashed")

// Mount mounts backing at mountpoint; both must be directories. It fails
// with a clear error when FUSE is unusable (no /dev/fuse, no fusermount3).
func Mount(mountpoint, backing string) (*FS, error) {
	backing, err := filepath.Abs(backing)
	if err != nil {
		return nil, err
	}
	var st syscall.Stat_t
	if err := syscall.Stat(backing, &st); err != nil {
		return nil, fmt.Errorf("lazyfs: backing directory: %w", err)
	}
	trash, err := os.MkdirTemp(filepath.Dir(backing), "."+filepath.Base(backing)+".lazyfs-trash-")
	if err != nil {
		return nil, fmt.Errorf("lazyfs: trash directory: %w", err)
	}
	f := &FS{mountpoint: mountpoint, backing: backing, trash: trash, files: map[uint64]*fileState{}}
	root := &fusefs.LoopbackRoot{Path: backing, Dev: uint64(st.Dev)}
	root.NewNode = func(r *fusefs.LoopbackRoot, _ *fusefs.Inode, _ string, _ *syscall.Stat_t) fusefs.InodeEmbedder {
		return &node{LoopbackNode: fusefs.LoopbackNode{RootData: r}, fs: f}
	}
	rootNode := root.NewNode(root, nil, "", &st)
	root.RootNode = rootNode
	timeout := time.Second
	f.server, err = fusefs.Mount(mountpoint, rootNode, &fusefs.Options{
		EntryTimeout: &timeout, AttrTimeout: &timeout,
		MountOptions: fuse.MountOptions{
			FsName: "lazyfs", Name: "lazyfs",
			// Reads and writes must come through the FS: no kernel
			// passthrough to the backing file.
			DisabledCapabilities: fuse.CAP_PASSTHROUGH,
		},
	})
	if err != nil {
		os.Remove(trash)
		return nil, fmt.Errorf("lazyfs: mounting %s on %s (needs /dev/fuse and fusermount3 from Debian's fuse3): %w", backing, mountpoint, err)
	}
	return f, nil
}

// isCrashed reports whether Crash or Unmount has begun.
func (f *FS) isCrashed() bool { return f.crashed.Load() }

// Mountpoint is where the FS is mounted.
func (f *FS) Mountpoint() string { return f.mountpoint }

// Stats returns what the FS has seen so far.
func (f *FS) Stats() Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stats
}

// Crash cuts the power: every operation from now on fails with EIO, every
// change not yet durable is undone in the backing directory, and the FS
// is unmounted. Processes still using the mount should be killed first;
// if the mount is busy it is detached lazily.
func (f *FS) Crash() (Loss, error) {
	f.mu.Lock()
	if f.crashed.Load() {
		f.mu.Unlock()
		return Loss{}, ErrCrashed
	}
	f.crashed.Store(true)
	loss, err := f.rollBack()
	f.mu.Unlock()
	return loss, errors.Join(err, f.unmount())
}

// Unmount unmounts cleanly: everything written stays, as after an orderly
// shutdown that flushed the page cache.
func (f *FS) Unmount() error {
	f.mu.Lock()
	if f.crashed.Load() {
		f.mu.Unlock()
		return ErrCrashed
	}
	f.crashed.Store(true)
	f.durable()
	f.mu.Unlock()
	return errors.Join(f.unmount(), os.RemoveAll(f.trash))
}

// unmount unmounts, lazily if the mount is busy, and waits a bounded time
// for the FUSE server to stop.
func (f *FS) unmount() error {
	err := f.server.Unmount()
	if err != nil {
		if lazy := syscall.Unmount(f.mountpoint, syscall.MNT_DETACH); lazy != nil {
			return fmt.Errorf("lazyfs: unmounting %s: %v; lazily: %v", f.mountpoint, err, lazy)
		}
		err = nil
	}
	done := make(chan struct{})
	go func() { f.server.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		return fmt.Errorf("lazyfs: the FUSE server of %s did not stop within 10s of unmounting", f.mountpoint)
	}
	return err
}

// durable makes everything so far durable (a sync point for all files and
// names). Caller holds mu.
func (f *FS) durable() {
	f.barrier()
	clear(f.files)
}

// barrier makes every metadata operation so far durable: removed files
// are gone for good. Caller holds mu.
func (f *FS) barrier() {
	for _, u := range f.journal {
		if u.trash != "" {
			os.Remove(u.trash)
		}
	}
	f.journal = f.journal[:0]
}

// rollBack undoes every metadata operation of the journal, newest first,
// then returns every file that changed since its last sync to its synced
// content. Caller holds mu.
func (f *FS) rollBack() (Loss, error) {
	var loss Loss
	var errs []error
	for i := len(f.journal) - 1; i >= 0; i-- {
		u := f.journal[i]
		var err error
		switch u.op {
		case "create":
			if fi, statErr := os.Lstat(u.path); statErr == nil {
				loss.FilesRemoved++
				loss.BytesDropped += fi.Size()
				loss.Files = append(loss.Files, fmt.Sprintf("%s: removed (%d bytes, created since the last sync)", f.rel(u.path), fi.Size()))
			}
			err = os.Remove(u.path)
		case "mkdir":
			err = os.Remove(u.path)
		case "remove":
			err = os.Rename(u.trash, u.path)
		case "rmdir":
			err = os.Mkdir(u.path, fs.FileMode(u.mode&0o7777))
		case "rename":
			err = os.Rename(u.path, u.from)
			if err == nil && u.trash != "" {
				err = os.Rename(u.trash, u.path)
			}
			if err == nil && u.replaced {
				err = os.Mkdir(u.path, fs.FileMode(u.mode&0o7777))
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("undoing %s %s: %w", u.op, u.path, err))
		}
		loss.Undone++
	}
	f.journal = nil
	err := filepath.WalkDir(f.backing, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(path, &st); err != nil {
			return err
		}
		fst, ok := f.files[st.Ino]
		if !ok {
			return nil
		}
		delete(f.files, st.Ino) // once per inode
		dropped, err := fst.restore(path, st.Size)
		if err != nil {
			return err
		}
		if dropped > 0 {
			loss.FilesRolledBack++
			loss.BytesDropped += dropped
			loss.Files = append(loss.Files, fmt.Sprintf("%s: back to %d bytes from %d (%d bytes dropped)", f.rel(path), fst.synced, st.Size, dropped))
		}
		return nil
	})
	errs = append(errs, err, os.RemoveAll(f.trash))
	clear(f.files)
	return loss, errors.Join(errs...)
}

// rel is a backing path relative to the backing directory.
func (f *FS) rel(path string) string {
	if r, err := filepath.Rel(f.backing, path); err == nil {
		return r
	}
	return path
}

// restore returns the file at path (now size bytes long) to its synced
// content and says how many bytes that dropped.
func (s *fileState) restore(path string, size int64) (int64, error) {
	dropped := max(0, size-s.synced)
	for _, e := range s.saved {
		dropped += int64(len(e.data))
	}
	if dropped == 0 && size == s.synced {
		return 0, nil
	}
	file, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return 0, err
	}
	defer file.Close()
	if err := file.Truncate(s.synced); err != nil {
		return 0, err
	}
	for _, e := range s.saved {
		if _, err := file.WriteAt(e.data, e.off); err != nil {
			return 0, err
		}
	}
	return dropped, file.Sync()
}

// state returns the tracked state of a file, starting it (as synced in
// full at its current size) on first touch. Caller holds mu.
func (f *FS) state(ino uint64, size int64) *fileState {
	s, ok := f.files[ino]
	if !ok {
		s = &fileState{synced: size}
		f.files[ino] = s
	}
	return s
}

// save keeps the current bytes of [off, end) of the file that are below
// its synced size and not already kept, read through readAt, before they
// are overwritten or truncated away.
func (s *fileState) save(readAt func([]byte, int64) (int, error), off, end int64) error {
	end = min(end, s.synced)
	for off < end {
		// Skip what is already kept; stop at the next kept extent.
		next := end
		covered := false
		for _, e := range s.saved {
			eEnd := e.off + int64(len(e.data))
			if e.off <= off && off < eEnd {
				off, covered = eEnd, true
				break
			}
			if e.off > off && e.off < next {
				next = e.off
			}
		}
		if covered {
			continue
		}
		buf := make([]byte, next-off)
		n, err := readAt(buf, off)
		if n < len(buf) {
			// Bytes below the synced size that the file no longer has
			// were truncated away and kept then: a gap here is a bug.
			return fmt.Errorf("lazyfs: reading %d bytes at %d to keep them: got %d: %v", len(buf), off, n, err)
		}
		s.saved = append(s.saved, extent{off: off, data: buf})
		off = next
	}
	slices.SortFunc(s.saved, func(a, b extent) int { return cmp.Compare(a.off, b.off) })
	return nil
}

// markSynced records that the file is durable at size.
func (s *fileState) markSynced(size int64) {
	s.synced, s.saved = size, nil
}

// trashName is a fresh name in the trash directory. Caller holds mu.
func (f *FS) trashName() string {
	f.trashSeq++
	return filepath.Join(f.trash, fmt.Sprint(f.trashSeq))
}
