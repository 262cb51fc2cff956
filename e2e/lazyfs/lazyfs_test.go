package lazyfs

import (
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// mount mounts a fresh backing directory (seeded with the given files) and
// unmounts it lazily at the end of the test, whatever happened.
func mount(t *testing.T, seed map[string]string) (fsys *FS, mnt, backing string) {
	t.Helper()
	base := t.TempDir()
	mnt, backing = filepath.Join(base, "mnt"), filepath.Join(base, "backing")
	for _, d := range []string{mnt, backing} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, content := range seed {
		if err := os.WriteFile(filepath.Join(backing, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fsys, err := Mount(mnt, backing)
	if err != nil {
		t.Fatalf("FUSE is unusable here, so power loss cannot be simulated: %v", err)
	}
	t.Cleanup(func() {
		if !fsys.isCrashed() {
			if err := fsys.Unmount(); err != nil {
				t.Errorf("unmount: %v", err)
			}
		}
		syscall.Unmount(mnt, syscall.MNT_DETACH) // in case the above failed
	})
	return fsys, mnt, backing
}

// tree is every file and directory under dir: path -> content, or "/" for
// a directory.
func tree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if d.IsDir() {
			out[rel] = "/"
			return nil
		}
		data, err := os.ReadFile(path)
		out[rel] = string(data)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// write writes data at off in the file (created if missing), fsyncs it if
// sync, and closes it.
func write(t *testing.T, path string, off int64, data string, flag int, sync bool) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|flag, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte(data), off); err != nil {
		t.Fatal(err)
	}
	if sync {
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
	}
}

func fsync(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestCrash(t *testing.T) {
	for _, tc := range []struct {
		name string
		seed map[string]string // in the backing directory before the mount: durable
		do   func(t *testing.T, m string)
		// before is the mount's content just before the cut; after is the
		// backing directory's after it.
		before, after map[string]string
	}{
		{
			name:   "write, fsync: kept",
			do:     func(t *testing.T, m string) { write(t, m+"/a", 0, "hello", 0, true) },
			before: map[string]string{"a": "hello"},
			after:  map[string]string{"a": "hello"},
		},
		{
			name:   "created and written, never synced: gone",
			do:     func(t *testing.T, m string) { write(t, m+"/a", 0, "hello", 0, false) },
			before: map[string]string{"a": "hello"},
			after:  map[string]string{},
		},
		{
			name: "created, another file synced: the name is durable, the data is not",
			do: func(t *testing.T, m string) {
				write(t, m+"/a", 0, "hello", 0, false)
				write(t, m+"/b", 0, "world", 0, true)
			},
			before: map[string]string{"a": "hello", "b": "world"},
			after:  map[string]string{"a": "", "b": "world"},
		},
		{
			name: "created, directory synced: the name is durable, the data is not",
			do: func(t *testing.T, m string) {
				write(t, m+"/a", 0, "hello", 0, false)
				fsync(t, m)
			},
			before: map[string]string{"a": "hello"},
			after:  map[string]string{"a": ""},
		},
		{
			name: "append after a sync: cut back to the synced size",
			do: func(t *testing.T, m string) {
				write(t, m+"/a", 0, "hello", 0, true)
				write(t, m+"/a", 5, " world", 0, false)
			},
			before: map[string]string{"a": "hello world"},
			after:  map[string]string{"a": "hello"},
		},
		{
			name: "overwrite, then append, then truncate below the synced size: all undone",
			seed: map[string]string{"a": "0123456789"},
			do: func(t *testing.T, m string) {
				write(t, m+"/a", 2, "ab", 0, false)
				write(t, m+"/a", 8, "cdefgh", 0, false)
				must(t, os.Truncate(m+"/a", 4))
				write(t, m+"/a", 3, "XYZ", 0, false)
			},
			before: map[string]string{"a": "01aXYZ"},
			after:  map[string]string{"a": "0123456789"},
		},
		{
			name: "O_TRUNC of a synced file, rewritten, not synced: the old content",
			seed: map[string]string{"a": "old content"},
			do: func(t *testing.T, m string) {
				write(t, m+"/a", 0, "new", os.O_TRUNC, false)
			},
			before: map[string]string{"a": "new"},
			after:  map[string]string{"a": "old content"},
		},
		{
			name: "O_SYNC writes: kept",
			do: func(t *testing.T, m string) {
				write(t, m+"/a", 0, "hello", os.O_SYNC, false)
			},
			before: map[string]string{"a": "hello"},
			after:  map[string]string{"a": "hello"},
		},
		{
			name: "overwrite, fsync, overwrite: the second overwrite undone",
			do: func(t *testing.T, m string) {
				write(t, m+"/a", 0, "aaaa", 0, true)
				write(t, m+"/a", 1, "bb", 0, true)
				write(t, m+"/a", 0, "cccccc", 0, false)
			},
			before: map[string]string{"a": "cccccc"},
			after:  map[string]string{"a": "abba"},
		},
		{
			name: "remove a durable file, no sync: it comes back",
			seed: map[string]string{"a": "keep me"},
			do: func(t *testing.T, m string) {
				must(t, os.Remove(m+"/a"))
			},
			before: map[string]string{},
			after:  map[string]string{"a": "keep me"},
		},
		{
			name: "remove a durable file, directory synced: gone",
			seed: map[string]string{"a": "drop me"},
			do: func(t *testing.T, m string) {
				must(t, os.Remove(m+"/a"))
				fsync(t, m)
			},
			before: map[string]string{},
			after:  map[string]string{},
		},
		{
			name: "write a temporary file, fsync it, rename over the old one, no directory sync: both, the old name with the old content",
			seed: map[string]string{"meta": "v1"},
			do: func(t *testing.T, m string) {
				write(t, m+"/meta.tmp", 0, "v2", 0, true)
				must(t, os.Rename(m+"/meta.tmp", m+"/meta"))
			},
			before: map[string]string{"meta": "v2"},
			after:  map[string]string{"meta": "v1", "meta.tmp": "v2"},
		},
		{
			name: "the same, then the directory synced: the new one",
			seed: map[string]string{"meta": "v1"},
			do: func(t *testing.T, m string) {
				write(t, m+"/meta.tmp", 0, "v2", 0, true)
				must(t, os.Rename(m+"/meta.tmp", m+"/meta"))
				fsync(t, m)
			},
			before: map[string]string{"meta": "v2"},
			after:  map[string]string{"meta": "v2"},
		},
		{
			name: "rename without any fsync, data never synced: the old file, no new name",
			seed: map[string]string{"meta": "v1"},
			do: func(t *testing.T, m string) {
				write(t, m+"/meta.tmp", 0, "v2", 0, false)
				must(t, os.Rename(m+"/meta.tmp", m+"/meta"))
			},
			before: map[string]string{"meta": "v2"},
			after:  map[string]string{"meta": "v1"},
		},
		{
			name: "rename a never-synced temporary file over the old one, then any fsync: the new name, empty",
			seed: map[string]string{"meta": "v1"},
			do: func(t *testing.T, m string) {
				write(t, m+"/meta.tmp", 0, "v2", 0, false)
				must(t, os.Rename(m+"/meta.tmp", m+"/meta"))
				write(t, m+"/other", 0, "x", 0, true)
			},
			before: map[string]string{"meta": "v2", "other": "x"},
			after:  map[string]string{"meta": "", "other": "x"},
		},
		{
			name: "directories: made and removed, not synced",
			seed: map[string]string{"x": "x"},
			do: func(t *testing.T, m string) {
				must(t, os.MkdirAll(m+"/d/e", 0o755))
				write(t, m+"/d/e/f", 0, "f", 0, false)
				must(t, os.Rename(m+"/d", m+"/g"))
				must(t, os.Remove(m+"/x"))
			},
			before: map[string]string{"g": "/", "g/e": "/", "g/e/f": "f"},
			after:  map[string]string{"x": "x"},
		},
		{
			name: "directories: made, file synced inside",
			do: func(t *testing.T, m string) {
				must(t, os.MkdirAll(m+"/d/e", 0o755))
				write(t, m+"/d/e/f", 0, "f", 0, true)
				must(t, os.Mkdir(m+"/later", 0o755))
			},
			before: map[string]string{"d": "/", "d/e": "/", "d/e/f": "f", "later": "/"},
			after:  map[string]string{"d": "/", "d/e": "/", "d/e/f": "f"},
		},
		{
			name: "a file written through a handle after it was removed: the removal and the writes undone",
			seed: map[string]string{"a": "abc"},
			do: func(t *testing.T, m string) {
				f, err := os.OpenFile(m+"/a", os.O_RDWR, 0)
				must(t, err)
				defer f.Close()
				must(t, os.Remove(m+"/a"))
				_, err = f.WriteAt([]byte("zzzz"), 0)
				must(t, err)
			},
			before: map[string]string{},
			after:  map[string]string{"a": "abc"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fsys, mnt, backing := mount(t, tc.seed)
			tc.do(t, mnt)
			if got := tree(t, mnt); !maps.Equal(got, tc.before) {
				t.Fatalf("before the cut the mount holds %v, want %v", got, tc.before)
			}
			loss, err := fsys.Crash()
			if err != nil {
				t.Fatalf("Crash: %v", err)
			}
			t.Logf("lost: %v", loss)
			if got := tree(t, backing); !maps.Equal(got, tc.after) {
				t.Errorf("after the cut the backing directory holds %v, want %v", got, tc.after)
			}
			if entries, _ := os.ReadDir(filepath.Dir(backing)); len(entries) != 2 {
				t.Errorf("beside the backing directory: %v, want only mnt and backing (the trash removed)", names(entries))
			}
		})
	}
}

func names(entries []os.DirEntry) []string {
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// TestRemount checks that a cut and a new mount of the same directories
// give the machine after the power came back: the durable state, writable.
func TestRemount(t *testing.T) {
	fsys, mnt, backing := mount(t, nil)
	write(t, mnt+"/a", 0, "one", 0, true)
	write(t, mnt+"/a", 3, " two", 0, false)
	if _, err := fsys.Crash(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.ReadFile(mnt + "/a"); err == nil {
		t.Fatal("the mount still answers after the cut")
	}
	fsys, err := Mount(mnt, backing)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Unmount(mnt, syscall.MNT_DETACH) })
	if got, want := tree(t, mnt), map[string]string{"a": "one"}; !maps.Equal(got, want) {
		t.Fatalf("after remount: %v, want %v", got, want)
	}
	write(t, mnt+"/a", 3, " three", 0, false)
	if err := fsys.Unmount(); err != nil {
		t.Fatal(err)
	}
	if got, want := tree(t, backing), map[string]string{"a": "one three"}; !maps.Equal(got, want) {
		t.Fatalf("after a clean unmount: %v, want %v", got, want)
	}
	if _, err := fsys.Crash(); !errors.Is(err, ErrCrashed) {
		t.Fatalf("Crash after Unmount: %v, want ErrCrashed", err)
	}
}

// TestRefused checks the operations the FS does not model.
func TestRefused(t *testing.T) {
	_, mnt, _ := mount(t, map[string]string{"a": "a"})
	for name, err := range map[string]error{
		"symlink":   os.Symlink("a", mnt+"/s"),
		"hard link": os.Link(mnt+"/a", mnt+"/l"),
	} {
		if !errors.Is(err, syscall.ENOTSUP) && !errors.Is(err, syscall.EOPNOTSUPP) {
			t.Errorf("%s: %v, want ENOTSUP", name, err)
		}
	}
	if got := slices.Sorted(maps.Keys(tree(t, mnt))); strings.Join(got, ",") != "a" {
		t.Errorf("mount holds %v, want only a", got)
	}
}
