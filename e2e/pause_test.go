package e2e

import (
	"strings"
	"testing"
	"time"
)

// TestFaultPauseCapacityd runs two capacityd on one nats-server and
// freezes one of them with SIGSTOP for seconds under load, then lets it go
// on with SIGCONT: its requests in flight time out (unknown), the other
// instance writes the same pools meanwhile, and after the resume the
// frozen one must answer from the pools' current history, not from the
// state it held when it stopped.
func TestFaultPauseCapacityd(t *testing.T) {
	nats := startNATS(t, 1)
	a := startCapacityd(t, capacitydOpts{Name: "capacityd-a", NATSURL: nats.URLs()})
	b := startCapacityd(t, capacitydOpts{Name: "capacityd-b", NATSURL: nats.URLs()})
	w := DefaultWorkload([]string{a.HTTPURL, b.HTTPURL}, 16)
	rec, tr := startTraffic(t, &w, "local")
	rounds := 2
	if *soak > 0 {
		rounds = max(rounds, int(*soak/(6*time.Second)))
	}
	var pauses []string
	for i := range rounds {
		ok0, since := tr.OK(), time.Now()
		run(jitter(phase(time.Second, rounds)))
		if i == 0 {
			t.Logf("rate before the first pause: %.0f ok ops/s", requireRate(t, tr, ok0, since, minRate))
		}
		pause := 2*time.Second + jitter(3*time.Second) // 3.5-6.5 s: past the clients' 3 s timeout
		pauses = append(pauses, pause.Round(100*time.Millisecond).String())
		a.Pause()
		run(pause)
		a.Resume()
	}
	run(2 * time.Second) // the resumed instance answers again, on pools b moved on
	tr.Stop()
	t.Logf("capacityd-a paused for %s", strings.Join(pauses, ", "))
	verify(t, history{w: &w, rec: rec, region: "local", replicas: 1, natsURLs: nats.URLs(), logs: []*proc{a.proc, b.proc, nats.Nodes[0].proc}})
}

// TestFaultPauseNATSLeader runs capacityd on a three-node JetStream
// cluster (--replicas 3) and freezes the stream leader's server with
// SIGSTOP for seconds, long enough for the others to elect a new leader,
// then resumes it: the old leader comes back believing it leads, and
// nothing it says may be acknowledged or read as current.
func TestFaultPauseNATSLeader(t *testing.T) {
	cl := startNATS(t, 3)
	svc := startCapacityd(t, capacitydOpts{NATSURL: cl.URLs(), Replicas: 3})
	_, js := connectJS(t, cl.URLs())
	w := DefaultWorkload([]string{svc.HTTPURL}, 16)
	rec, tr := startTraffic(t, &w, "local")
	rounds := 1
	if *soak > 0 {
		rounds = max(rounds, int(*soak/(15*time.Second)))
	}
	var paused, recoveries []string
	for i := range rounds {
		ok0, since := tr.OK(), time.Now()
		run(jitter(phase(time.Second, rounds)))
		if i == 0 {
			t.Logf("rate before the first pause: %.0f ok ops/s", requireRate(t, tr, ok0, since, minRate))
		}
		leader := waitStreamLeader(t, js, "CAPACITY_LOCAL")
		node := cl.Node(leader)
		if node == nil {
			t.Fatalf("stream leader %q is not one of ours", leader)
		}
		pause := jitter(8 * time.Second) // 4-12 s: the election timeout is 4-9 s
		paused = append(paused, leader+" "+pause.Round(100*time.Millisecond).String())
		pausedAt := time.Now()
		node.Pause()
		recovery := make(chan time.Duration, 1)
		go func() { recovery <- recoveryAfter(tr, pausedAt, time.Minute) }()
		run(pause)
		node.Resume()
		waitStreamHealthy(t, js, "CAPACITY_LOCAL", 3)
		recoveries = append(recoveries, (<-recovery).Round(100*time.Millisecond).String())
	}
	run(time.Second)
	tr.Stop()
	t.Logf("stream leaders paused (for): %s", strings.Join(paused, ", "))
	t.Logf("service answering again after each pause began: %s", strings.Join(recoveries, ", "))
	logs := []*proc{svc.proc}
	for _, n := range cl.Nodes {
		logs = append(logs, n.proc)
	}
	verify(t, history{w: &w, rec: rec, region: "local", replicas: 3, natsURLs: cl.URLs(), logs: logs})
}
