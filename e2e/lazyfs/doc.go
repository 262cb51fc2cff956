// Package lazyfs is a FUSE passthrough filesystem that forgets, on a
// simulated power cut, every write that was not fsync'd: the method of
// Jepsen's LazyFS, on github.com/hanwen/go-fuse/v2.
//
// Mount exposes a backing directory at a mount point. Every operation goes
// straight through to the backing directory, so reads see exactly what was
// written, at the speed of the backing filesystem. Alongside, the FS keeps
// in memory what it would need to undo whatever is not yet durable. Crash
// stops the FS (later operations fail with EIO), undoes all of that in the
// backing directory and unmounts: afterwards the backing directory holds
// exactly what was durable at the cut, and a new Mount on it is the machine
// after it powers up again.
//
// # What is durable
//
// The model is that of a journalling filesystem such as ext4 or XFS, with
// its page cache lost and nothing written back by the kernel on its own
// (the harshest case: a real kernel writes dirty pages back after about 30
// seconds, which only ever makes things better).
//
//   - File data is durable when the file is fsync'd (fsync or fdatasync, on
//     any handle of the file), or written through a handle opened with
//     O_SYNC or O_DSYNC. At a cut the file goes back to its size and bytes
//     at its last sync: writes past that size are cut off, overwrites and
//     truncations below it are undone. A file that existed before the mount
//     counts as synced in full.
//   - Names are durable in order. Creating, removing and renaming files and
//     directories are metadata operations; every fsync (of a file or of a
//     directory, and every O_SYNC write) makes all metadata operations
//     before it durable, as a journal commit does on ext4. At a cut every
//     later metadata operation is undone, newest first: a file created and
//     never followed by a sync disappears, a removed file comes back with
//     its synced content, a rename goes back. A file whose creation is
//     durable but whose data was never synced comes back empty, which is
//     what ext4 does too.
//
// Strict POSIX asks for more: a new name is durable only once its directory
// is fsync'd. This model does not go that far: nats-server fsyncs a new
// message block but not the directory that holds it (filestore.go,
// newMsgBlockForWrite and flushPendingMsgsLocked), which is safe on ext4
// and XFS but would lose the block on a filesystem that keeps the two
// apart.
//
// Hard links, symbolic links, special files, O_TMPFILE and copy_file_range
// are refused with ENOTSUP; extended attributes pass through and are
// always durable. Removed files are kept in a trash directory beside the
// backing directory (same filesystem, so moving them is a rename) until
// the removal is durable.
//
// Mounting needs /dev/fuse and the fusermount3 helper (Debian's fuse3).
package lazyfs
