package lazyfs

import (
	"context"
	"os"
	"path/filepath"
	"syscall"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// node is a file or directory of the mount: go-fuse's loopback node, with
// every operation that changes the backing directory recorded so that a
// Crash can undo it.
type node struct {
	fusefs.LoopbackNode
	fs *FS
}

var (
	_ fusefs.NodeCreater        = (*node)(nil)
	_ fusefs.NodeOpener         = (*node)(nil)
	_ fusefs.NodeOpendirHandler = (*node)(nil)
	_ fusefs.NodeFsyncer        = (*node)(nil)
	_ fusefs.NodeSetattrer      = (*node)(nil)
	_ fusefs.NodeMkdirer        = (*node)(nil)
	_ fusefs.NodeRmdirer        = (*node)(nil)
	_ fusefs.NodeUnlinker       = (*node)(nil)
	_ fusefs.NodeRenamer        = (*node)(nil)
	_ fusefs.NodeMknoder        = (*node)(nil)
	_ fusefs.NodeSymlinker      = (*node)(nil)
	_ fusefs.NodeLinker         = (*node)(nil)
	_ fusefs.NodeTmpfiler       = (*node)(nil)
	_ fusefs.NodeCopyFileRanger = (*node)(nil)
)

// backingPath is the node's path in the backing directory.
func (n *node) backingPath() string {
	return filepath.Join(n.RootData.Path, n.Path(n.Root()))
}

// lock takes the FS's lock unless it has crashed; the caller unlocks.
func (f *FS) lock() bool {
	f.mu.Lock()
	if f.crashed.Load() {
		f.mu.Unlock()
		return false
	}
	return true
}

// record appends an undo record to the journal. Caller holds mu.
func (f *FS) record(u undo) {
	f.journal = append(f.journal, u)
	f.stats.MetadataOps++
}

// stableAttr is how go-fuse's loopback identifies a backing file (one
// device: its inode number, and a generation from its birth time).
func stableAttr(fd int, st *syscall.Stat_t) fusefs.StableAttr {
	gen := uint64(1)
	var x unix.Statx_t
	if unix.Statx(fd, "", unix.AT_EMPTY_PATH, unix.STATX_BTIME, &x) == nil && x.Mask&unix.STATX_BTIME != 0 &&
		(x.Btime.Sec != 0 || x.Btime.Nsec != 0) {
		gen = uint64(x.Btime.Sec)*1e9 + uint64(x.Btime.Nsec)
	}
	return fusefs.StableAttr{Mode: st.Mode, Gen: gen, Ino: st.Ino}
}

// openBacking opens a backing file for a handle of the mount. A write-only
// handle is opened read-write so that bytes about to be overwritten can be
// read and kept.
func openBacking(path string, flags int, mode os.FileMode) (*os.File, error) {
	flags &^= syscall.O_APPEND | fuse.FMODE_EXEC
	if flags&syscall.O_ACCMODE == syscall.O_WRONLY {
		if f, err := os.OpenFile(path, flags&^syscall.O_ACCMODE|syscall.O_RDWR, mode); err == nil {
			return f, nil
		}
	}
	return os.OpenFile(path, flags, mode)
}

// keepBeforeTruncate keeps the synced bytes of the file at path (inode ino,
// size bytes) that a truncation to newSize would drop. Caller holds mu.
func (f *FS) keepBeforeTruncate(path string, ino uint64, size, newSize int64) error {
	s := f.state(ino, size)
	if newSize >= s.synced {
		return nil
	}
	file, err := os.Open(path)
	if err != nil {
		return err
	}
	defer file.Close()
	return s.save(file.ReadAt, newSize, s.synced)
}

func (n *node) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*fusefs.Inode, fusefs.FileHandle, uint32, syscall.Errno) {
	f := n.fs
	if !f.lock() {
		return nil, nil, 0, syscall.EIO
	}
	defer f.mu.Unlock()
	p := filepath.Join(n.backingPath(), name)
	var before syscall.Stat_t
	existed := syscall.Lstat(p, &before) == nil
	if existed && flags&syscall.O_TRUNC != 0 && before.Mode&syscall.S_IFMT == syscall.S_IFREG {
		if err := f.keepBeforeTruncate(p, before.Ino, before.Size, 0); err != nil {
			return nil, nil, 0, fusefs.ToErrno(err)
		}
	}
	file, err := openBacking(p, int(flags)|os.O_CREATE, os.FileMode(mode))
	if err != nil {
		return nil, nil, 0, fusefs.ToErrno(err)
	}
	st, err := fstat(file)
	if err != nil {
		file.Close()
		return nil, nil, 0, fusefs.ToErrno(err)
	}
	if !existed {
		f.record(undo{op: "create", path: p})
		f.files[st.Ino] = &fileState{} // nothing of it is synced
	}
	child := n.RootData.NewNode(n.RootData, n.EmbeddedInode(), name, st)
	ch := n.NewInode(ctx, child, stableAttr(int(file.Fd()), st))
	out.FromStat(st)
	return ch, newFile(f, file, flags), 0, 0
}

func (n *node) Open(ctx context.Context, flags uint32) (fusefs.FileHandle, uint32, syscall.Errno) {
	f := n.fs
	if !f.lock() {
		return nil, 0, syscall.EIO
	}
	defer f.mu.Unlock()
	p := n.backingPath()
	if flags&syscall.O_TRUNC != 0 {
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			return nil, 0, fusefs.ToErrno(err)
		}
		if err := f.keepBeforeTruncate(p, st.Ino, st.Size, 0); err != nil {
			return nil, 0, fusefs.ToErrno(err)
		}
	}
	file, err := openBacking(p, int(flags), 0)
	if err != nil {
		return nil, 0, fusefs.ToErrno(err)
	}
	return newFile(f, file, flags), 0, 0
}

func (n *node) Setattr(ctx context.Context, fh fusefs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	size, ok := in.GetSize()
	if !ok {
		return n.LoopbackNode.Setattr(ctx, fh, in, out)
	}
	f := n.fs
	if !f.lock() {
		return syscall.EIO
	}
	defer f.mu.Unlock()
	p := n.backingPath()
	var st syscall.Stat_t
	if lf, ok := fh.(*file); ok {
		s, err := fstat(lf.file)
		if err != nil {
			return fusefs.ToErrno(err)
		}
		st = *s
	} else if err := syscall.Lstat(p, &st); err != nil {
		return fusefs.ToErrno(err)
	}
	if lf, ok := fh.(*file); ok {
		s := f.state(st.Ino, st.Size)
		if err := s.save(lf.file.ReadAt, int64(size), s.synced); err != nil {
			return syscall.EIO
		}
	} else if err := f.keepBeforeTruncate(p, st.Ino, st.Size, int64(size)); err != nil {
		return fusefs.ToErrno(err)
	}
	f.stats.Writes++
	return n.LoopbackNode.Setattr(ctx, fh, in, out)
}

// Fsync makes the file's data durable, and every metadata operation so far.
func (n *node) Fsync(ctx context.Context, fh fusefs.FileHandle, flags uint32) syscall.Errno {
	lf, ok := fh.(*file)
	if !ok {
		return syscall.EBADF
	}
	return lf.sync()
}

func (n *node) OpendirHandle(ctx context.Context, flags uint32) (fusefs.FileHandle, uint32, syscall.Errno) {
	ds, fuseFlags, errno := n.LoopbackNode.OpendirHandle(ctx, flags)
	if errno != 0 {
		return nil, 0, errno
	}
	return &dir{FileHandle: ds, fs: n.fs}, fuseFlags, 0
}

func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	f := n.fs
	if !f.lock() {
		return nil, syscall.EIO
	}
	defer f.mu.Unlock()
	ch, errno := n.LoopbackNode.Mkdir(ctx, name, mode, out)
	if errno == 0 {
		f.record(undo{op: "mkdir", path: filepath.Join(n.backingPath(), name)})
	}
	return ch, errno
}

func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	f := n.fs
	if !f.lock() {
		return syscall.EIO
	}
	defer f.mu.Unlock()
	p := filepath.Join(n.backingPath(), name)
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		return fusefs.ToErrno(err)
	}
	if err := syscall.Rmdir(p); err != nil {
		return fusefs.ToErrno(err)
	}
	f.record(undo{op: "rmdir", path: p, mode: st.Mode})
	return 0
}

// Unlink moves the file to the trash, where it stays until the removal is
// durable.
func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	f := n.fs
	if !f.lock() {
		return syscall.EIO
	}
	defer f.mu.Unlock()
	p := filepath.Join(n.backingPath(), name)
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		return fusefs.ToErrno(err)
	}
	if st.Mode&syscall.S_IFMT == syscall.S_IFDIR {
		return syscall.EISDIR
	}
	trash := f.trashName()
	if err := syscall.Rename(p, trash); err != nil {
		return fusefs.ToErrno(err)
	}
	f.record(undo{op: "remove", path: p, trash: trash})
	return 0
}

// Rename renames, keeping a replaced file in the trash (as a hard link
// taken before the rename, so the rename itself stays atomic).
func (n *node) Rename(ctx context.Context, name string, newParent fusefs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	np, ok := newParent.(*node)
	if !ok {
		return syscall.EXDEV
	}
	if flags&^unix.RENAME_NOREPLACE != 0 {
		return syscall.ENOTSUP // RENAME_EXCHANGE, RENAME_WHITEOUT
	}
	f := n.fs
	if !f.lock() {
		return syscall.EIO
	}
	defer f.mu.Unlock()
	from, to := filepath.Join(n.backingPath(), name), filepath.Join(np.backingPath(), newName)
	var fromSt, toSt syscall.Stat_t
	if err := syscall.Lstat(from, &fromSt); err != nil {
		return fusefs.ToErrno(err)
	}
	u := undo{op: "rename", path: to, from: from}
	if syscall.Lstat(to, &toSt) == nil {
		switch {
		case flags&unix.RENAME_NOREPLACE != 0:
			return syscall.EEXIST
		case toSt.Ino == fromSt.Ino:
			return 0 // the same file: nothing to do
		case toSt.Mode&syscall.S_IFMT == syscall.S_IFDIR:
			if fromSt.Mode&syscall.S_IFMT != syscall.S_IFDIR {
				return syscall.EISDIR
			}
			u.replaced, u.mode = true, toSt.Mode // an empty directory, or the rename fails
		default:
			if fromSt.Mode&syscall.S_IFMT == syscall.S_IFDIR {
				return syscall.ENOTDIR
			}
			u.trash = f.trashName()
			if err := syscall.Link(to, u.trash); err != nil {
				return fusefs.ToErrno(err)
			}
		}
	}
	if err := syscall.Rename(from, to); err != nil {
		if u.trash != "" {
			os.Remove(u.trash)
		}
		return fusefs.ToErrno(err)
	}
	f.record(u)
	return 0
}

// Refused: see the package documentation.

func (n *node) Mknod(ctx context.Context, name string, mode, rdev uint32, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	return nil, syscall.ENOTSUP
}

func (n *node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	return nil, syscall.ENOTSUP
}

func (n *node) Link(ctx context.Context, target fusefs.InodeEmbedder, name string, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	return nil, syscall.ENOTSUP
}

func (n *node) Tmpfile(ctx context.Context, flags, mode uint32, out *fuse.EntryOut) (*fusefs.Inode, fusefs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, syscall.ENOTSUP
}

func (n *node) CopyFileRange(ctx context.Context, fhIn fusefs.FileHandle, offIn uint64, out *fusefs.Inode, fhOut fusefs.FileHandle, offOut, length, flags uint64) (uint32, syscall.Errno) {
	return 0, syscall.ENOTSUP
}

func fstat(file *os.File) (*syscall.Stat_t, error) {
	fi, err := file.Stat()
	if err != nil {
		return nil, err
	}
	return fi.Sys().(*syscall.Stat_t), nil
}
