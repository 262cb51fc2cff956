package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/capacityd/capacityd/capacity"
)

// TestReplayReportReadsAReport: a report written by WriteReport is read
// back and checked again; a directory without one is an error.
func TestReplayReportReadsAReport(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	gt := GroundTruthOf([]StreamEvent{{Seq: 1, Pool: "p", Type: capacity.PoolDefinedType, Capacity: 1, At: t0}})
	res := Check(nil, map[string]int{"p": 1}, gt, nil, time.Minute)
	dir := t.TempDir()
	if err := WriteReport(dir, res, map[string]int{"p": 1}, nil, gt, nil); err != nil {
		t.Fatal(err)
	}
	var lines []string
	logf := func(format string, args ...any) { lines = append(lines, format) }
	if err := ReplayReport(dir, logf); err != nil {
		t.Fatalf("replaying a written report: %v", err)
	}
	if len(lines) == 0 {
		t.Fatal("replaying a report logged nothing")
	}
	if err := ReplayReport(filepath.Join(dir, "missing"), logf); err == nil {
		t.Fatal("replaying a directory without a report succeeded")
	}
	if err := os.WriteFile(filepath.Join(dir, "stream.json"), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := ReplayReport(dir, logf)
	if err == nil || !strings.Contains(err.Error(), "stream.json") {
		t.Fatalf("replaying a broken stream.json: %v, want an error naming it", err)
	}
}
