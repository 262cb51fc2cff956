package lazyfs

import (
	"context"
	"os"
	"syscall"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// file is an open file of the mount: go-fuse's loopback file, with writes
// recorded so that a Crash can undo them.
type file struct {
	*fusefs.LoopbackFile
	fs   *FS
	file *os.File
	// syncWrites: opened with O_SYNC or O_DSYNC, every write is durable.
	syncWrites bool
}

var (
	_ fusefs.FileWriter          = (*file)(nil)
	_ fusefs.FileReader          = (*file)(nil)
	_ fusefs.FileAllocater       = (*file)(nil)
	_ fusefs.FilePassthroughFder = (*file)(nil)
)

func newFile(f *FS, backing *os.File, flags uint32) *file {
	return &file{
		LoopbackFile: fusefs.NewLoopbackFileFromOS(backing),
		fs:           f, file: backing,
		syncWrites: flags&syscall.O_DSYNC != 0, // O_SYNC includes O_DSYNC's bit
	}
}

// PassthroughFd refuses kernel passthrough: reads and writes must come
// through the FS, or it could not know what is unsynced.
func (lf *file) PassthroughFd() (int, bool) { return 0, false }

func (lf *file) Read(ctx context.Context, buf []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if lf.fs.isCrashed() {
		return nil, syscall.EIO
	}
	return lf.LoopbackFile.Read(ctx, buf, off)
}

func (lf *file) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	f := lf.fs
	if !f.lock() {
		return 0, syscall.EIO
	}
	defer f.mu.Unlock()
	st, err := fstat(lf.file)
	if err != nil {
		return 0, fusefs.ToErrno(err)
	}
	s := f.state(st.Ino, st.Size)
	if err := s.save(lf.file.ReadAt, off, off+int64(len(data))); err != nil {
		return 0, syscall.EIO
	}
	n, err := lf.file.WriteAt(data, off)
	f.stats.Writes++
	if err != nil {
		return uint32(n), fusefs.ToErrno(err)
	}
	if lf.syncWrites {
		s.markSynced(max(st.Size, off+int64(n)))
		f.barrier()
		f.stats.Syncs++
	}
	return uint32(n), 0
}

// Allocate passes through; modes that change the file's bytes (punching a
// hole, zeroing a range) keep the bytes they replace first.
func (lf *file) Allocate(ctx context.Context, off, size uint64, mode uint32) syscall.Errno {
	f := lf.fs
	if !f.lock() {
		return syscall.EIO
	}
	defer f.mu.Unlock()
	if mode&^unix.FALLOC_FL_KEEP_SIZE != 0 {
		st, err := fstat(lf.file)
		if err != nil {
			return fusefs.ToErrno(err)
		}
		if err := f.state(st.Ino, st.Size).save(lf.file.ReadAt, int64(off), int64(off+size)); err != nil {
			return syscall.EIO
		}
	}
	f.stats.Writes++
	return lf.LoopbackFile.Allocate(ctx, off, size, mode)
}

// sync makes the file's data durable, and every metadata operation so far,
// then fsyncs the backing file.
func (lf *file) sync() syscall.Errno {
	f := lf.fs
	if !f.lock() {
		return syscall.EIO
	}
	st, err := fstat(lf.file)
	if err != nil {
		f.mu.Unlock()
		return fusefs.ToErrno(err)
	}
	f.state(st.Ino, st.Size).markSynced(st.Size)
	f.barrier()
	f.stats.Syncs++
	f.mu.Unlock()
	return fusefs.ToErrno(lf.file.Sync())
}

// dir is an open directory of the mount: go-fuse's loopback directory
// stream, whose fsync makes every metadata operation so far durable.
type dir struct {
	fusefs.FileHandle
	fs *FS
}

var (
	_ fusefs.FileReaddirenter = (*dir)(nil)
	_ fusefs.FileSeekdirer    = (*dir)(nil)
	_ fusefs.FileReleasedirer = (*dir)(nil)
	_ fusefs.FileFsyncdirer   = (*dir)(nil)
)

func (d *dir) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	return d.FileHandle.(fusefs.FileReaddirenter).Readdirent(ctx)
}

func (d *dir) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	return d.FileHandle.(fusefs.FileSeekdirer).Seekdir(ctx, off)
}

func (d *dir) Releasedir(ctx context.Context, flags uint32) {
	d.FileHandle.(fusefs.FileReleasedirer).Releasedir(ctx, flags)
}

func (d *dir) Fsyncdir(ctx context.Context, flags uint32) syscall.Errno {
	f := d.fs
	if !f.lock() {
		return syscall.EIO
	}
	f.barrier()
	f.stats.Syncs++
	f.mu.Unlock()
	return d.FileHandle.(fusefs.FileFsyncdirer).Fsyncdir(ctx, flags)
}
