//go:build !unix

package main

import "os"

// lockDataDir does nothing where flock(2) does not exist: on such systems
// nothing stops two instances sharing one --data directory.
func lockDataDir(string) (*os.File, error) { return nil, nil }
