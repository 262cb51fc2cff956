//go:build unix

package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// lockDataDir takes an exclusive lock on dir for as long as this process
// runs (the kernel drops it when the process dies, kill -9 included). Two
// embedded servers on one store directory would each believe they own its
// files: together they overbook and lose acknowledged writes. The second
// one refuses to start instead.
func lockDataDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, "capacityd.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("--data %q: lock file: %v", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			who := "another process"
			if pid, perr := strconv.Atoi(strings.TrimSpace(string(holder))); perr == nil {
				who = fmt.Sprintf("another process (pid %d)", pid)
			}
			return nil, fmt.Errorf("--data %q is in use by %s: one embedded NATS per data directory; "+
				"to run several instances, give each its own --data, or share one NATS through --nats-url", dir, who)
		}
		return nil, fmt.Errorf("--data %q: lock: %v", dir, err)
	}
	if err := f.Truncate(0); err == nil {
		fmt.Fprintf(f, "%d\n", os.Getpid())
	}
	return f, nil
}
