package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestFaultPartitionCapacitydNATS cuts capacityd off its NATS server (an
// external one, through a proxy) under load, again and again, and delays
// the link for a while. Cut off, capacityd can acknowledge nothing; after
// each heal it goes on. The promise: no acknowledged hold lost, no pool over
// capacity, a linearizable history.
func TestFaultPartitionCapacitydNATS(t *testing.T) {
	cl := startNATS(t, 1)
	link := startProxy(t, strings.TrimPrefix(cl.Nodes[0].URL(), "nats://"))
	svc := startCapacityd(t, capacitydOpts{NATSURL: "nats://" + link.Addr()})
	w := DefaultWorkload([]string{svc.HTTPURL}, 16)
	rec, tr := startTraffic(t, &w, "local")
	rounds := 3
	if *soak > 0 {
		rounds = max(rounds, int(*soak/(6*time.Second)))
	}
	var recoveries, cutOK []string
	for i := range rounds {
		ok0, since := tr.OK(), time.Now()
		run(jitter(time.Second))
		if i == 0 {
			t.Logf("rate before the first partition: %.0f ok ops/s", requireRate(t, tr, ok0, since, minRate))
		}
		link.Cut()
		cutFor := jitter(3 * time.Second)
		okBefore := tr.OK()
		run(cutFor)
		// Answers already in flight at the cut may finish; nothing new can
		// be acknowledged while it lasts.
		during := tr.OK() - okBefore
		if during > 200 {
			t.Errorf("round %d: %d operations succeeded while capacityd was cut off its NATS", i, during)
		}
		cutOK = append(cutOK, fmt.Sprintf("%d in %s", during, cutFor.Round(100*time.Millisecond)))
		healedAt := time.Now()
		link.Heal()
		recoveries = append(recoveries, recoveryAfter(tr, healedAt, time.Minute).Round(100*time.Millisecond).String())
	}
	link.SetDelay(20 * time.Millisecond) // a slow link: slower, still correct
	run(2 * time.Second)
	link.SetDelay(0)
	run(time.Second)
	tr.Stop()
	t.Logf("FIGURES TestFaultPartitionCapacitydNATS: ops that succeeded while cut off (in flight at the cut): %s; service answering again after each heal: %s", strings.Join(cutOK, ", "), strings.Join(recoveries, ", "))
	verify(t, history{w: &w, rec: rec, region: "local", replicas: 1, natsURLs: cl.URLs(), logs: []*proc{svc.proc, cl.Nodes[0].proc}})
}

// TestFaultPartitionR3Leader isolates the event stream's leader from the
// other two nodes of an R3 cluster (every route between nodes goes through
// a proxy) for longer than an election, under load, then heals. capacityd
// keeps its client connections to every node. The isolated leader has no
// quorum: it must acknowledge nothing (an acknowledged write it kept would
// be lost at the heal); the majority elects a new leader and goes on.
func TestFaultPartitionR3Leader(t *testing.T) {
	cl, routes := startNATSProxiedRoutes(t, 3)
	svc := startCapacityd(t, capacitydOpts{NATSURL: cl.URLs(), Replicas: 3})
	_, js := connectJS(t, cl.URLs())
	w := DefaultWorkload([]string{svc.HTTPURL}, 16)
	rec, tr := startTraffic(t, &w, "local")
	rounds := 1
	if *soak > 0 {
		rounds = max(2, int(*soak/(15*time.Second)))
	}
	var isolated, recoveries []string
	for i := range rounds {
		ok0, since := tr.OK(), time.Now()
		run(jitter(time.Second))
		if i == 0 {
			t.Logf("rate before the first partition: %.0f ok ops/s", requireRate(t, tr, ok0, since, minRate))
		}
		leader := waitStreamLeader(t, js, "CAPACITY_LOCAL")
		isolated = append(isolated, leader)
		cutAt := time.Now()
		for _, p := range routes.touching(leader) {
			p.Cut()
		}
		recovery := make(chan time.Duration, 1)
		go func() { recovery <- recoveryAfter(tr, cutAt, time.Minute) }()
		run(12 * time.Second) // past the majority's election (4-9 s in nats-server 2.15)
		for _, p := range routes.touching(leader) {
			p.Heal()
		}
		recoveries = append(recoveries, (<-recovery).Round(100*time.Millisecond).String())
		waitStreamHealthy(t, js, "CAPACITY_LOCAL", 3)
	}
	run(time.Second)
	tr.Stop()
	t.Logf("stream leaders isolated in turn: %s", strings.Join(isolated, ", "))
	t.Logf("FIGURES TestFaultPartitionR3Leader: service answering again after each isolation: %s", strings.Join(recoveries, ", "))
	logs := []*proc{svc.proc}
	for _, n := range cl.Nodes {
		logs = append(logs, n.proc)
	}
	verify(t, history{w: &w, rec: rec, region: "local", replicas: 3, natsURLs: cl.URLs(), logs: logs})
}

// routeProxies are the proxies every route between two nodes goes through,
// by the node that dials and the node dialled.
type routeProxies map[[2]string]*proxy

// touching returns every proxy on a route to or from node.
func (r routeProxies) touching(node string) []*proxy {
	var out []*proxy
	for k, p := range r {
		if k[0] == node || k[1] == node {
			out = append(out, p)
		}
	}
	return out
}

// startNATSProxiedRoutes is startNATS for a cluster whose routes all pass
// through proxies: node a dials node b through its own proxy. Each node
// advertises an unreachable cluster address, so no node learns another's
// real route port from gossip and bypasses the proxies.
func startNATSProxiedRoutes(t *testing.T, n int) (*natsCluster, routeProxies) {
	t.Helper()
	c := &natsCluster{}
	// The nodes' ports stay reserved while the proxies open theirs: a port
	// picked and closed at once could be the next one a proxy is given,
	// and the node then fails to bind it (seen in CI).
	var ports portReservation
	defer ports.release()
	for i := range n {
		dir := t.TempDir()
		node := &natsNode{
			Name: fmt.Sprintf("n%d", i+1), Port: ports.port(t), ClusterPort: ports.port(t), dir: dir,
			confPath: filepath.Join(dir, "nats.conf"),
		}
		node.proc = newProc(t, node.Name, filepath.Join(dir, node.Name+".log"))
		c.Nodes = append(c.Nodes, node)
	}
	routes := routeProxies{}
	for _, node := range c.Nodes {
		var urls []string
		for _, other := range c.Nodes {
			if other == node {
				continue
			}
			p := startProxy(t, fmt.Sprintf("127.0.0.1:%d", other.ClusterPort))
			routes[[2]string{node.Name, other.Name}] = p
			urls = append(urls, fmt.Sprintf("nats-route://%s", p.Addr()))
		}
		conf := fmt.Sprintf("server_name: %s\nlisten: 127.0.0.1:%d\njetstream { store_dir: %q }\n", node.Name, node.Port, filepath.Join(node.dir, "js"))
		conf += fmt.Sprintf("cluster { name: c\n listen: 127.0.0.1:%d\n advertise: \"127.0.0.1:1\"\n routes: [%s]\n}\n",
			node.ClusterPort, strings.Join(urls, ", "))
		if err := os.WriteFile(node.confPath, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ports.release()
	for _, node := range c.Nodes {
		node.Start(t)
	}
	c.waitJetStream(t)
	return c, routes
}
