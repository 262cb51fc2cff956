package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/capacityd/capacityd/e2e/lazyfs"
	"github.com/capacityd/capacityd/streams/natstest"
)

// powerMode is one durability setting of capacityd under power cuts.
type powerMode struct {
	name         string
	sync         string // --sync
	syncInterval string // --sync-interval; empty: the binary's default (2m)
	cuts         int    // power cuts in the default suite
	// traffic is the least time traffic runs before each cut (it also
	// runs until 300 more operations were acknowledged).
	traffic time.Duration
	// mayLose: acknowledged holds may be lost (and the run must show that
	// it can see a loss); otherwise none may be.
	mayLose bool
}

// powerFigures is one row of the power-loss table.
type powerFigures struct {
	mode        powerMode
	cuts        int
	acked, lost int // acknowledged holds, and those the stream no longer has
	lostPerCut  []int
	overbooked  int // pools over capacity in the stream
	promised    int // pools whose acknowledged holds add up to more than their capacity
	dropped     lazyfs.Loss
	writes      int // writes and syncs the filesystem saw
	syncs       int
	recoveries  []string // how long capacityd took to be ready after each cut
}

func (f powerFigures) String() string {
	interval := f.mode.syncInterval
	if interval == "" && f.mode.sync == "interval" {
		interval = "2m (default)"
	}
	mode := "--sync " + f.mode.sync
	if interval != "" {
		mode += " --sync-interval " + interval
	}
	per := make([]string, len(f.lostPerCut))
	for i, n := range f.lostPerCut {
		per[i] = fmt.Sprint(n)
	}
	return fmt.Sprintf("mode=%q cuts=%d acked_holds=%d lost_holds=%d (per cut: %s) overbooked_pools=%d pools_promised_over_capacity=%d; filesystem: %d writes, %d syncs, dropped %v; ready again after: %s",
		mode, f.cuts, f.acked, f.lost, strings.Join(per, ","), f.overbooked, f.promised, f.writes, f.syncs, f.dropped, strings.Join(f.recoveries, ","))
}

// TestFaultPowerLoss cuts the power under capacityd: its --data is on a
// lazyfs mount (a FUSE passthrough that forgets every write not fsync'd),
// and each cut is a kill -9 of capacityd (its embedded nats-server dies
// with it) followed by dropping the page cache's unsynced writes, then a
// remount and a restart. After each cut every acknowledged hold is looked
// up in the stream. --sync always must lose none; --sync interval's loss
// is measured and printed (and must be visible at all, or the test could
// not fail).
func TestFaultPowerLoss(t *testing.T) {
	modes := []powerMode{
		{name: "always", sync: "always", cuts: 10},
		{name: "strict", sync: "strict", cuts: 3},
		{name: "interval-default", sync: "interval", cuts: 2, mayLose: true},
		{name: "interval-1s", sync: "interval", syncInterval: "1s", cuts: 2, traffic: 2500 * time.Millisecond, mayLose: true},
	}
	var rows []powerFigures
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			rows = append(rows, powerLoss(t, m))
		})
	}
	for _, r := range rows {
		t.Logf("FIGURES TestFaultPowerLoss: %v", r)
	}
}

func powerLoss(t *testing.T, m powerMode) powerFigures {
	base := t.TempDir()
	mnt, backing := filepath.Join(base, "data"), filepath.Join(base, "disk")
	for _, d := range []string{mnt, backing} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	disk := mountLazy(t, mnt, backing)

	opts := capacitydOpts{Name: "capacityd", Region: "local", Sync: m.sync, Replicas: 1}
	if m.syncInterval != "" {
		opts.Extra = []string{"--sync-interval", m.syncInterval}
	}
	svc := &capacityd{
		proc: newProc(t, opts.Name, filepath.Join(base, opts.Name+".log")),
		opts: opts, dataDir: mnt,
	}
	svc.launch(t, "127.0.0.1:0", "127.0.0.1:0")

	w := DefaultWorkload([]string{svc.HTTPURL}, 16)
	// Holds and confirms, no releases: every acknowledged hold keeps its
	// units, so the acknowledged holds of a pool must fit in it.
	w.Hold, w.Confirm, w.Release, w.Read = 70, 10, 0, 20
	w.Extend, w.Book, w.PartialShare = 0, 0, 0 // the mix before bookings
	w.HotShare = 0.2
	for i := range w.Pools {
		if !w.Pools[i].Hot {
			w.Pools[i].Capacity = 1_000_000 // every cold hold fits, cut after cut
		}
	}
	rec := NewRecorder()

	cuts := m.cuts
	if *soak > 0 {
		cuts = max(cuts, int(*soak/(3*time.Second))/3)
	}
	fig := powerFigures{mode: m, cuts: cuts}
	missing := map[string]bool{} // acknowledged holds the stream lost, by reservation id
	for i := range cuts {
		// Pools lost with a store are defined again (PUT is idempotent).
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := w.Define(ctx, "local"); err != nil {
			cancel()
			t.Fatal(err)
		}
		tr := w.Start(rec)
		ok0, since := tr.OK(), time.Now()
		err := tr.WaitOK(ctx, 300)
		cancel()
		if err != nil {
			tr.Stop()
			t.Fatal(err)
		}
		if m.traffic > 0 {
			run(jitter(m.traffic))
		}
		if i == 0 {
			t.Logf("rate before the first cut: %.0f ok ops/s", requireRate(t, tr, ok0, since, minRate))
		}
		// The power cut: the process dies with whatever it had in flight,
		// then the machine forgets what was not on disk.
		svc.Kill9()
		tr.Stop()
		st := disk.fs.Stats()
		fig.writes, fig.syncs = fig.writes+st.Writes, fig.syncs+st.Syncs
		loss := disk.cut(t)
		fig.dropped = fig.dropped.Add(loss)
		logOffset := fileSize(svc.logPath)
		restarted := time.Now()
		svc.Restart(t)
		fig.recoveries = append(fig.recoveries, time.Since(restarted).Round(10*time.Millisecond).String())

		gt := groundTruth(t, svc.NATSURL)
		acked, lostNow := 0, 0
		for _, op := range rec.All() {
			if op.Kind != KindHold || op.Outcome != OK {
				continue
			}
			acked++
			if h, ok := gt.Held[ResKey{op.Pool, op.ReservationID}]; ok && h.Quantity == op.Quantity {
				continue
			}
			if !missing[op.ReservationID] {
				missing[op.ReservationID] = true
				lostNow++
				if !m.mayLose && lostNow <= 10 {
					t.Errorf("cut %d: acknowledged hold %s/%s (%d units) is not in the stream", i+1, op.Pool, op.ReservationID, op.Quantity)
				}
			}
		}
		fig.acked, fig.lost = acked, len(missing)
		fig.lostPerCut = append(fig.lostPerCut, lostNow)
		for _, l := range recoveryNotes(svc.logPath, logOffset) {
			t.Logf("cut %d: capacityd's restart said: %s", i+1, l)
		}
		t.Logf("cut %d: %d acknowledged holds so far, %d lost by this cut; the filesystem dropped: %v\n  %s", i+1, acked, lostNow, loss, strings.Join(loss.Files, "\n  "))
	}

	// What the customers were told against what the pools hold.
	gt := groundTruth(t, svc.NATSURL)
	promised := map[string]int{}
	for _, op := range rec.All() {
		if op.Kind == KindHold && op.Outcome == OK {
			promised[op.Pool] += op.Quantity
		}
	}
	for _, p := range w.Pools {
		if gt.MaxUsed[p.ID] > p.Capacity {
			fig.overbooked++
		}
		if promised[p.ID] > p.Capacity {
			fig.promised++
		}
	}
	t.Logf("FIGURES %s: %v", t.Name(), fig)

	switch {
	case !m.mayLose && (fig.lost > 0 || fig.overbooked > 0 || fig.promised > 0):
		t.Errorf("--sync %s broke a promise over %d power cuts: %d of %d acknowledged holds lost, %d pools overbooked in the stream, %d promised over capacity",
			m.sync, cuts, fig.lost, fig.acked, fig.overbooked, fig.promised)
	case !m.mayLose:
		// Nothing lost: the whole history must also check out.
		verify(t, history{w: &w, rec: rec, region: "local", replicas: 1, natsURLs: svc.NATSURL, logs: []*proc{svc.proc}})
	case fig.dropped.BytesDropped == 0 || fig.lost == 0:
		// Without a visible loss where one is expected the harness proves
		// nothing: the filesystem may not be dropping anything.
		t.Errorf("--sync %s lost no acknowledged hold (filesystem dropped: %v): the power cuts are not reaching the data", m.sync, fig.dropped)
	}
	return fig
}

// lazyMount is the lazyfs mount that capacityd's --data is on, mounted
// again after each power cut.
type lazyMount struct {
	fs           *lazyfs.FS
	mnt, backing string
}

// mountLazy mounts a lazyfs over backing at mnt. When the test ends the
// current mount is unmounted (lazily if it must be), whatever happened; call
// it before starting anything that uses the mount, so that this cleanup runs
// after theirs. It fails the test (never skips) when FUSE is unusable.
func mountLazy(t *testing.T, mnt, backing string) *lazyMount {
	t.Helper()
	m := &lazyMount{mnt: mnt, backing: backing}
	m.mount(t)
	t.Cleanup(func() {
		if err := m.fs.Unmount(); err != nil && !errors.Is(err, lazyfs.ErrCrashed) {
			t.Logf("unmounting %s: %v", mnt, err)
		}
		syscall.Unmount(mnt, syscall.MNT_DETACH) // if still mounted after a failure
	})
	return m
}

func (m *lazyMount) mount(t *testing.T) {
	t.Helper()
	var err error
	if m.fs, err = lazyfs.Mount(m.mnt, m.backing); err != nil {
		t.Fatalf("the power-loss tests need FUSE (/dev/fuse, and fusermount3 from Debian's fuse3, which .ci/run installs): %v", err)
	}
}

// cut drops every write not yet durable and mounts the disk again.
func (m *lazyMount) cut(t *testing.T) lazyfs.Loss {
	t.Helper()
	loss, err := m.fs.Crash()
	if err != nil {
		t.Fatalf("power cut: %v", err)
	}
	m.mount(t)
	return loss
}

// fileSize is the size of the file at path (0 if it is missing).
func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// recoveryNotes are the warnings and errors in a log from offset on: what
// the embedded nats-server said about the store it recovered.
func recoveryNotes(path string, offset int64) []string {
	data, err := os.ReadFile(path)
	if err != nil || offset > int64(len(data)) {
		return []string{fmt.Sprintf("reading %s: %v", path, err)}
	}
	var notes []string
	for line := range strings.Lines(string(data[offset:])) {
		var entry struct {
			Level   string `json:"level"`
			Message string `json:"message"`
		}
		if json.Unmarshal([]byte(line), &entry) == nil && (entry.Level == "warn" || entry.Level == "error") {
			notes = append(notes, entry.Level+": "+entry.Message)
		}
	}
	return notes
}

// groundTruth reads the event stream through the service's NATS, waiting
// for it to answer.
func groundTruth(t *testing.T, natsURL string) *GroundTruth {
	t.Helper()
	var gt *GroundTruth
	natstest.CheckFor(t, 60*time.Second, 200*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var err error
		gt, err = ReadGroundTruth(ctx, natsURL, "local", 1)
		return err
	})
	return gt
}
