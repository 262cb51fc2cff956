package main

import (
	"os"
	"strconv"
)

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

func writeFile(path string) error { return os.WriteFile(path, []byte("not a directory"), 0o644) }
