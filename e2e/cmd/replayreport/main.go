// Command replayreport checks a fault test's failure report again, pool
// by pool, and prints where an illegal pool's history stops linearizing:
//
//	go run ./e2e/cmd/replayreport <report dir>
package main

import (
	"fmt"
	"os"

	"github.com/capacityd/capacityd/e2e"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: replayreport <report dir>")
		os.Exit(2)
	}
	logf := func(format string, args ...any) { fmt.Printf(format+"\n", args...) }
	if err := e2e.ReplayReport(os.Args[1], logf); err != nil {
		fmt.Fprintln(os.Stderr, "replayreport:", err)
		os.Exit(1)
	}
}
