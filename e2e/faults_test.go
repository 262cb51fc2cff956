package e2e

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/capacityd/capacityd/streams/natstest"
	"github.com/nats-io/nats.go/jetstream"
)

// minRate is the acknowledged operations a second the workload must reach
// before the first fault of a scenario.
const minRate = 50

// run lets traffic flow for d.
func run(d time.Duration) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	<-timer.C
}

// jitter is a random duration in [d/2, 3d/2).
func jitter(d time.Duration) time.Duration {
	return d/2 + time.Duration(rand.Int64N(int64(d)))
}

// recoveryAfter returns how long after a fault at since the service was
// answering again: the end of the first 200 ms window, starting at least
// 500 ms after the fault (so answers already in flight do not count), in
// which 10 or more operations succeeded. It gives up at limit.
func recoveryAfter(tr *Traffic, since time.Time, limit time.Duration) time.Duration {
	run(500 * time.Millisecond)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	prev := tr.OK()
	for range tick.C {
		ok := tr.OK()
		if ok-prev >= 10 || time.Since(since) > limit {
			return time.Since(since)
		}
		prev = ok
	}
	return limit
}

// startTraffic defines the workload's pools and starts it; it returns once
// the traffic is flowing, with the figures to check its rate against.
func startTraffic(t *testing.T, w *Workload, region string) (*Recorder, *Traffic) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.Define(ctx, region); err != nil {
		t.Fatal(err)
	}
	rec := NewRecorder()
	return rec, w.Start(rec)
}

// TestFaultKill9 kills capacityd (embedded NATS, --sync always) with
// SIGKILL at random points under load and restarts it on the same data
// directory, five times or more.
func TestFaultKill9(t *testing.T) {
	svc := startCapacityd(t, capacitydOpts{})
	w := DefaultWorkload([]string{svc.HTTPURL}, 24)
	rec, tr := startTraffic(t, &w, "local")
	kills := 5
	if *soak > 0 {
		kills = max(kills, int(*soak/(5*time.Second)))
	}
	for i := range kills {
		ok0, since := tr.OK(), time.Now()
		run(jitter(phase(time.Second, kills)))
		if i == 0 {
			t.Logf("rate before the first kill: %.0f ok ops/s", requireRate(t, tr, ok0, since, minRate))
		}
		svc.Kill9()
		svc.Restart(t)
	}
	run(time.Second)
	tr.Stop()
	t.Logf("%d kills", kills)
	verify(t, history{w: &w, rec: rec, region: "local", replicas: 1, natsURLs: svc.NATSURL, logs: []*proc{svc.proc}})
}

// TestFaultTwoInstances runs two capacityd on one external nats-server,
// both taking writes for the same pools; one is killed and restarted.
func TestFaultTwoInstances(t *testing.T) {
	nats := startNATS(t, 1)
	a := startCapacityd(t, capacitydOpts{Name: "capacityd-a", NATSURL: nats.URLs()})
	b := startCapacityd(t, capacitydOpts{Name: "capacityd-b", NATSURL: nats.URLs()})
	w := DefaultWorkload([]string{a.HTTPURL, b.HTTPURL}, 24)
	rec, tr := startTraffic(t, &w, "local")
	rounds := 3
	if *soak > 0 {
		rounds = max(rounds, int(*soak/(4*time.Second)))
	}
	for i := range rounds {
		ok0, since := tr.OK(), time.Now()
		run(jitter(phase(time.Second, rounds)))
		if i == 0 {
			t.Logf("rate before the first kill: %.0f ok ops/s", requireRate(t, tr, ok0, since, minRate))
		}
		a.Kill9()
		run(jitter(500 * time.Millisecond)) // b alone
		a.Restart(t)
	}
	run(time.Second)
	tr.Stop()
	verify(t, history{w: &w, rec: rec, region: "local", replicas: 1, natsURLs: nats.URLs(), logs: []*proc{a.proc, b.proc, nats.Nodes[0].proc}})
}

// streamLeader returns the server name of the stream's leader.
func streamLeader(ctx context.Context, js jetstream.JetStream, stream string) (string, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return "", err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return "", err
	}
	if info.Cluster == nil || info.Cluster.Leader == "" {
		return "", errors.New("no leader")
	}
	return info.Cluster.Leader, nil
}

// waitStreamLeader waits (up to 30 s) for the stream to have a leader and
// returns its server name.
func waitStreamLeader(t testing.TB, js jetstream.JetStream, stream string) string {
	t.Helper()
	var leader string
	natstest.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		var err error
		leader, err = streamLeader(ctx, js, stream)
		return err
	})
	return leader
}

// waitStreamHealthy waits (up to 60 s) until streamHealthy holds.
func waitStreamHealthy(t testing.TB, js jetstream.JetStream, stream string, replicas int) {
	t.Helper()
	natstest.CheckFor(t, 60*time.Second, 200*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return streamHealthy(ctx, js, stream, replicas)
	})
}

// streamHealthy is nil once the stream has a leader and every replica is
// current.
func streamHealthy(ctx context.Context, js jetstream.JetStream, stream string, replicas int) error {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return err
	}
	if info.Cluster == nil || info.Cluster.Leader == "" {
		return errors.New("no leader")
	}
	if got := len(info.Cluster.Replicas) + 1; got != replicas {
		return fmt.Errorf("%d of %d replicas", got, replicas)
	}
	for _, r := range info.Cluster.Replicas {
		if !r.Current || r.Offline {
			return fmt.Errorf("replica %s not current (lag %d, offline %v)", r.Name, r.Lag, r.Offline)
		}
	}
	return nil
}

// TestFaultClusterLeaderKill runs capacityd on a three-node JetStream
// cluster with --replicas 3 and kills the stream leader's server with
// SIGKILL, then restarts it, repeatedly.
func TestFaultClusterLeaderKill(t *testing.T) {
	cl := startNATS(t, 3)
	svc := startCapacityd(t, capacitydOpts{NATSURL: cl.URLs(), Replicas: 3})
	_, js := connectJS(t, cl.URLs())
	w := DefaultWorkload([]string{svc.HTTPURL}, 16)
	rec, tr := startTraffic(t, &w, "local")
	rounds := 3
	if *soak > 0 {
		rounds = max(rounds, int(*soak/(8*time.Second)))
	}
	var killed, recoveries []string
	for i := range rounds {
		ok0, since := tr.OK(), time.Now()
		run(jitter(phase(time.Second, rounds)))
		if i == 0 {
			t.Logf("rate before the first kill: %.0f ok ops/s", requireRate(t, tr, ok0, since, minRate))
		}
		leader := waitStreamLeader(t, js, "CAPACITY_LOCAL")
		node := cl.Node(leader)
		if node == nil {
			t.Fatalf("stream leader %q is not one of ours", leader)
		}
		killed = append(killed, leader)
		killedAt := time.Now()
		node.Kill9()
		recovery := make(chan time.Duration, 1)
		go func() { recovery <- recoveryAfter(tr, killedAt, time.Minute) }()
		run(jitter(time.Second)) // through the election
		node.Start(t)
		waitStreamHealthy(t, js, "CAPACITY_LOCAL", 3)
		recoveries = append(recoveries, (<-recovery).Round(100*time.Millisecond).String())
	}
	run(time.Second)
	tr.Stop()
	t.Logf("stream leaders killed in turn: %s", strings.Join(killed, ", "))
	t.Logf("FIGURES TestFaultClusterLeaderKill: service answering again after each leader kill: %s", strings.Join(recoveries, ", "))
	logs := []*proc{svc.proc}
	for _, n := range cl.Nodes {
		logs = append(logs, n.proc)
	}
	verify(t, history{w: &w, rec: rec, region: "local", replicas: 3, natsURLs: cl.URLs(), logs: logs})
}

// readPools reads every pool of the workload through url, recording the
// reads into the history as client id client.
func readPools(t *testing.T, rec *Recorder, client int, url string, pools []PoolSpec) map[string]PoolDoc {
	t.Helper()
	c := NewClient(url, 10*time.Second)
	defer c.Close()
	out := make(map[string]PoolDoc)
	for _, p := range pools {
		natstest.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
			op := Op{Client: client, Kind: KindRead, Pool: p.ID}
			op.Call = rec.Now()
			r := c.Do(context.Background(), "GET", "/v1/pools/"+p.ID, nil, nil)
			op.Return = rec.Now()
			fill(&op, r)
			rec.Add(op)
			if op.Outcome != OK {
				return errNotOK("GET pool "+p.ID, r)
			}
			var doc PoolDoc
			if err := r.Decode(&doc); err != nil {
				return err
			}
			out[p.ID] = doc
			return nil
		})
	}
	return out
}

// samePools fails the test unless both reads agree on every pool.
func samePools(t *testing.T, what string, before, after map[string]PoolDoc) {
	t.Helper()
	for id, b := range before {
		a := after[id]
		if a.Capacity != b.Capacity || a.Held != b.Held || a.Confirmed != b.Confirmed || a.Version != b.Version || a.Status != b.Status {
			t.Errorf("%s: pool %s was %+v, is %+v", what, id, b, a)
		}
	}
}

// TestFaultSnapshotAndConsumerLoss corrupts then deletes every pool's
// snapshot in the KV bucket and deletes the durable consumers on the event
// stream; after a kill -9 and restart the service answers the same state,
// rebuilt from the stream, and keeps taking traffic linearizably.
func TestFaultSnapshotAndConsumerLoss(t *testing.T) {
	svc := startCapacityd(t, capacitydOpts{SnapshotEvery: 5})
	w := DefaultWorkload([]string{svc.HTTPURL}, 16)
	rec, tr := startTraffic(t, &w, "local")
	ok0, since := tr.OK(), time.Now()
	run(phase(2*time.Second, 1))
	t.Logf("rate: %.0f ok ops/s", requireRate(t, tr, ok0, since, minRate))
	tr.Stop()
	checker := w.Clients + 1
	before := readPools(t, rec, checker, svc.HTTPURL, w.Pools)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nc, js := connectJS(t, svc.NATSURL)
	kv, err := js.KeyValue(ctx, "pool_snapshots")
	if err != nil {
		t.Fatal(err)
	}
	snapshots := 0
	for _, p := range w.Pools {
		key := "local." + p.ID
		if _, err := kv.Get(ctx, key); err == nil {
			snapshots++
		}
		if _, err := kv.Put(ctx, key, []byte("\x00garbage{not a snapshot")); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d of %d pools had a snapshot before the corruption", snapshots, len(w.Pools))
	deleted := deleteDurables(t, ctx, js, "CAPACITY_LOCAL")
	nc.Close()

	svc.Kill9()
	svc.Restart(t)
	samePools(t, "after corrupting the snapshots", before, readPools(t, rec, checker, svc.HTTPURL, w.Pools))

	nc, js = connectJS(t, svc.NATSURL)
	if kv, err = js.KeyValue(ctx, "pool_snapshots"); err != nil {
		t.Fatal(err)
	}
	for _, p := range w.Pools {
		if err := kv.Delete(ctx, "local."+p.ID); err != nil {
			t.Fatal(err)
		}
	}
	deleted = append(deleted, deleteDurables(t, ctx, js, "CAPACITY_LOCAL")...)
	nc.Close()
	svc.Kill9()
	svc.Restart(t)
	samePools(t, "after deleting the snapshots", before, readPools(t, rec, checker, svc.HTTPURL, w.Pools))
	if len(deleted) == 0 {
		t.Logf("TODO: no durable consumer on CAPACITY_LOCAL to delete: the read models (streams/projection) are not wired into cmd/capacityd yet")
	} else {
		t.Logf("durable consumers deleted: %s", strings.Join(deleted, ", "))
	}

	// The service goes on from the rebuilt state.
	tr = w.Start(rec)
	run(time.Second)
	tr.Stop()
	verify(t, history{w: &w, rec: rec, region: "local", replicas: 1, natsURLs: svc.NATSURL, logs: []*proc{svc.proc}})
}

// deleteDurables deletes every durable consumer of a stream and returns
// their names.
func deleteDurables(t *testing.T, ctx context.Context, js jetstream.JetStream, stream string) []string {
	t.Helper()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	lister := s.ListConsumers(ctx)
	for info := range lister.Info() {
		if info.Config.Durable != "" {
			names = append(names, info.Name)
		}
	}
	if err := lister.Err(); err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		if err := s.DeleteConsumer(ctx, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			t.Fatal(err)
		}
	}
	return names
}

// TestFaultDurabilitySyncAlways kills capacityd (--sync always) right
// after a burst of acknowledged holds and restarts it: every acknowledged
// hold is there.
func TestFaultDurabilitySyncAlways(t *testing.T) {
	svc := startCapacityd(t, capacitydOpts{Sync: "always"})
	w := DefaultWorkload([]string{svc.HTTPURL}, 16)
	w.Hold, w.Confirm, w.Release, w.Read = 80, 10, 0, 10
	w.HotShare = 0 // cold pools: every hold fits, so every hold is a write
	rec, tr := startTraffic(t, &w, "local")
	rounds := 3
	if *soak > 0 {
		rounds = max(rounds, int(*soak/(3*time.Second)))
	}
	for i := range rounds {
		ok0, since := tr.OK(), time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := tr.WaitOK(ctx, 200)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			t.Logf("rate before the first kill: %.0f ok ops/s", requireRate(t, tr, ok0, since, minRate))
		}
		svc.Kill9() // while acks are still arriving
		svc.Restart(t)
	}
	tr.Stop()
	c := NewClient(svc.HTTPURL, 10*time.Second)
	defer c.Close()
	var acked, missing int
	for _, op := range rec.All() {
		if op.Kind != KindHold || op.Outcome != OK {
			continue
		}
		acked++
		if _, found, err := c.GetReservation(context.Background(), op.Pool, op.ReservationID); err != nil {
			t.Fatal(err)
		} else if !found {
			missing++
			t.Errorf("acknowledged hold %s/%s missing after kill -9 with --sync always", op.Pool, op.ReservationID)
		}
	}
	t.Logf("%d acknowledged holds checked by GET after %d kills: %d missing", acked, rounds, missing)
	verify(t, history{w: &w, rec: rec, region: "local", replicas: 1, natsURLs: svc.NATSURL, logs: []*proc{svc.proc}})
}
