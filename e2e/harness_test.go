package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/capacityd/capacityd/streams/natstest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// soak, when positive, stretches the traffic phases of the fault scenarios
// to that total: go test ./e2e -run Fault -soak=10m.
var soak = flag.Duration("soak", 0, "run each fault scenario's traffic for about this long (0: the short default)")

// Binaries built once by TestMain.
var (
	capacitydBin  string
	natsServerBin string
)

func TestMain(m *testing.M) {
	flag.Parse()
	if v := os.Getenv("CAPACITY_SOAK"); v != "" && *soak == 0 {
		d, err := time.ParseDuration(v)
		if err != nil {
			fmt.Fprintf(os.Stderr, "e2e: $CAPACITY_SOAK %q: %v\n", v, err)
			os.Exit(2)
		}
		*soak = d
	}
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "capacityd-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	root, err := moduleRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	capacitydBin = filepath.Join(dir, "capacityd")
	natsServerBin = filepath.Join(dir, "nats-server")
	builds := []struct{ out, pkg string }{
		{capacitydBin, "./cmd/capacityd"},
		// nats-server is in go.mod (capacityd embeds it): build its
		// command from the module cache for the external-NATS scenarios.
		{natsServerBin, "github.com/nats-io/nats-server/v2"},
	}
	errs := make([]error, len(builds))
	var wg sync.WaitGroup
	for i, b := range builds {
		wg.Go(func() {
			cmd := exec.Command("go", "build", "-o", b.out, b.pkg)
			cmd.Dir = root
			if out, err := cmd.CombinedOutput(); err != nil {
				errs[i] = fmt.Errorf("go build %s: %v\n%s", b.pkg, err, out)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	return m.Run()
}

// moduleRoot is the directory holding go.mod.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %v", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside a module")
	}
	return filepath.Dir(gomod), nil
}

// proc is a child process whose output goes to a log file in the test's
// temporary directory; the log's tail is printed when the test fails.
type proc struct {
	t       testing.TB
	name    string
	logPath string
	env     []string // added to the test's environment

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when the current process has exited
	state  *os.ProcessState
}

func newProc(t testing.TB, name, logPath string) *proc {
	p := &proc{t: t, name: name, logPath: logPath}
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("--- last lines of %s (%s) ---\n%s", name, logPath, tailFile(logPath, 40))
		}
	})
	return p
}

// launch starts bin with args, appending its output to the log, and returns
// the log offset where this run's output begins.
func (p *proc) launch(bin string, args ...string) (int64, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil && !isClosed(p.exited) {
		return 0, fmt.Errorf("%s is already running", p.name)
	}
	f, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 0, err
	}
	fmt.Fprintf(f, "=== %s %s %s\n", time.Now().Format(time.RFC3339Nano), bin, strings.Join(args, " "))
	offset, _ := f.Seek(0, io.SeekEnd)
	cmd := exec.Command(bin, args...)
	if len(p.env) > 0 {
		cmd.Env = append(os.Environ(), p.env...)
	}
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return 0, fmt.Errorf("starting %s: %w", p.name, err)
	}
	exited := make(chan struct{})
	p.cmd, p.exited, p.state = cmd, exited, nil
	go func() {
		cmd.Wait()
		f.Close()
		p.mu.Lock()
		p.state = cmd.ProcessState
		p.mu.Unlock()
		close(exited)
	}()
	return offset, nil
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// running reports whether the process is alive.
func (p *proc) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil && !isClosed(p.exited)
}

// Kill9 kills the process with SIGKILL and waits until it is gone.
func (p *proc) Kill9() {
	p.t.Helper()
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	if cmd == nil {
		p.t.Fatalf("%s: Kill9 before start", p.name)
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-exited
}

// Term sends SIGTERM and waits up to limit for the exit; it returns the exit
// code and how long the process took. It fails the test on a timeout.
func (p *proc) Term(limit time.Duration) (int, time.Duration) {
	p.t.Helper()
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		p.t.Fatalf("%s: SIGTERM: %v", p.name, err)
	}
	select {
	case <-exited:
	case <-time.After(limit):
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-exited
		p.t.Fatalf("%s did not exit within %v of SIGTERM", p.name, limit)
	}
	took := time.Since(start)
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state.ExitCode(), took
}

// Pause stops the process with SIGSTOP; Resume continues it. A paused
// process keeps its sockets open and answers nothing, like a long GC pause
// or a VM stalled by its host.
func (p *proc) Pause() { p.signal(syscall.SIGSTOP) }

// Resume continues a paused process with SIGCONT.
func (p *proc) Resume() { p.signal(syscall.SIGCONT) }

func (p *proc) signal(sig syscall.Signal) {
	p.t.Helper()
	p.mu.Lock()
	cmd := p.cmd
	p.mu.Unlock()
	if cmd == nil {
		p.t.Fatalf("%s: %v before start", p.name, sig)
	}
	if err := cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("%s: %v: %v", p.name, sig, err)
	}
}

func (p *proc) stop() {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	if cmd == nil || isClosed(exited) {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-exited
}

// tailFile returns the last n lines of a file.
func tailFile(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// readyLine is the "capacityd ready" log line.
type readyLine struct {
	Message string `json:"message"`
	HTTP    string `json:"http"`
	NATS    string `json:"nats"`
	Stream  string `json:"stream"`
	Bucket  string `json:"bucket"`
}

// findReady scans the log from offset for the "capacityd ready" line.
func findReady(path string, offset int64) (readyLine, bool) {
	f, err := os.Open(path)
	if err != nil {
		return readyLine{}, false
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return readyLine{}, false
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if !bytes.Contains(line, []byte("capacityd ready")) {
			continue
		}
		var r readyLine
		if json.Unmarshal(line, &r) == nil && r.Message == "capacityd ready" {
			return r, true
		}
	}
	return readyLine{}, false
}

// capacitydOpts configures one capacityd process.
type capacitydOpts struct {
	Name          string // for logs; default "capacityd"
	Region        string // default "local"
	Sync          string // always (default) or interval
	NATSURL       string // external NATS; empty to embed one
	Replicas      int    // default 1
	SnapshotEvery int    // 0: the binary's default
	Extra         []string
	Env           []string // added to the environment, e.g. CAPACITY_CLOCK_FILE=...
}

// capacityd is a running capacityd binary.
type capacityd struct {
	*proc
	opts    capacitydOpts
	dataDir string
	starts  int

	// HTTPURL and NATSURL are where the process listens (from its ready
	// line); a restart binds the same addresses again.
	HTTPURL, NATSURL string
}

// startCapacityd starts the binary on free ports with a data directory and
// a log file under t.TempDir(), and waits for its ready line.
func startCapacityd(t testing.TB, opts capacitydOpts) *capacityd {
	t.Helper()
	if opts.Name == "" {
		opts.Name = "capacityd"
	}
	if opts.Region == "" {
		opts.Region = "local"
	}
	if opts.Sync == "" {
		opts.Sync = "always"
	}
	if opts.Replicas == 0 {
		opts.Replicas = 1
	}
	dir := t.TempDir()
	c := &capacityd{
		proc:    newProc(t, opts.Name, filepath.Join(dir, opts.Name+".log")),
		opts:    opts,
		dataDir: filepath.Join(dir, "data"),
	}
	c.proc.env = opts.Env
	c.launch(t, "127.0.0.1:0", "127.0.0.1:0")
	return c
}

func (c *capacityd) launch(t testing.TB, httpAddr, natsAddr string) {
	t.Helper()
	args := []string{
		"--http", httpAddr,
		"--region", c.opts.Region,
		"--sync", c.opts.Sync,
		"--replicas", fmt.Sprint(c.opts.Replicas),
		"--log-format", "json",
		// An explicit name: the default is derived from --http's port,
		// "0" here for every instance (see the report of this suite).
		"--instance", c.opts.Name,
	}
	if c.opts.NATSURL != "" {
		args = append(args, "--nats-url", c.opts.NATSURL)
	} else {
		args = append(args, "--data", c.dataDir, "--nats-listen", natsAddr)
	}
	if c.opts.SnapshotEvery > 0 {
		args = append(args, "--snapshot-every", fmt.Sprint(c.opts.SnapshotEvery))
	}
	args = append(args, c.opts.Extra...)
	offset, err := c.proc.launch(capacitydBin, args...)
	if err != nil {
		t.Fatal(err)
	}
	c.starts++
	var ready readyLine
	deadline := time.Now().Add(60 * time.Second)
	for {
		var ok bool
		if ready, ok = findReady(c.logPath, offset); ok {
			break
		}
		if !c.running() {
			t.Fatalf("%s exited before it was ready:\n%s", c.name, tailFile(c.logPath, 20))
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no ready line after 60s", c.name)
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.HTTPURL, c.NATSURL = ready.HTTP, ready.NATS
}

// Restart starts the process again on the same data directory and the same
// HTTP and NATS addresses, so clients keep their URLs. It must have exited.
func (c *capacityd) Restart(t testing.TB) {
	t.Helper()
	if c.running() {
		t.Fatalf("%s: Restart while running", c.name)
	}
	natsAddr := "127.0.0.1:0"
	if c.opts.NATSURL == "" {
		natsAddr = strings.TrimPrefix(c.NATSURL, "nats://")
	}
	c.launch(t, strings.TrimPrefix(c.HTTPURL, "http://"), natsAddr)
}

// freePort returns a TCP port that was free a moment ago. Only for
// nats-server cluster routes, which must be known before any node starts.
func freePort(t testing.TB) int {
	t.Helper()
	var r portReservation
	defer r.release()
	return r.port(t)
}

// portReservation keeps listeners open on ports picked for processes not
// started yet, so that a listener this process opens meanwhile on port 0
// (a proxy) cannot be handed one of them; release closes them just before
// those processes start.
type portReservation []net.Listener

// port returns a free port and keeps it reserved until release.
func (r *portReservation) port(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	*r = append(*r, ln)
	return ln.Addr().(*net.TCPAddr).Port
}

// release frees every reserved port. A pointer receiver: a deferred
// release must see the ports reserved after the defer statement.
func (r *portReservation) release() {
	for _, ln := range *r {
		ln.Close()
	}
	*r = nil
}

// natsNode is one nats-server process with JetStream on disk.
type natsNode struct {
	*proc
	Name        string
	Port        int
	ClusterPort int
	dir         string
	confPath    string
}

// URL is the node's client URL.
func (n *natsNode) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.Port) }

// Start starts (or restarts) the node on its data directory and waits
// until it accepts client connections.
func (n *natsNode) Start(t testing.TB) {
	t.Helper()
	if _, err := n.proc.launch(natsServerBin, "-c", n.confPath); err != nil {
		t.Fatal(err)
	}
	natstest.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		if !n.running() {
			return fmt.Errorf("%s exited:\n%s", n.Name, tailFile(n.logPath, 20))
		}
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", n.Port), time.Second)
		if err != nil {
			return err
		}
		return conn.Close()
	})
}

// natsCluster is one or more nats-server processes.
type natsCluster struct {
	Nodes []*natsNode
}

// URLs is every node's client URL, comma-separated.
func (c *natsCluster) URLs() string {
	urls := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		urls[i] = n.URL()
	}
	return strings.Join(urls, ",")
}

// Node returns the node with the given server name.
func (c *natsCluster) Node(name string) *natsNode {
	for _, n := range c.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// startNATS runs n nats-server processes with JetStream; with n > 1 they
// form a cluster. It waits until JetStream answers.
func startNATS(t testing.TB, n int) *natsCluster {
	t.Helper()
	c := &natsCluster{}
	var ports portReservation // held together: no two nodes get one port
	defer ports.release()
	for i := range n {
		dir := t.TempDir()
		node := &natsNode{
			Name: fmt.Sprintf("n%d", i+1), Port: ports.port(t), dir: dir,
			confPath: filepath.Join(dir, "nats.conf"),
		}
		if n > 1 {
			node.ClusterPort = ports.port(t)
		}
		node.proc = newProc(t, node.Name, filepath.Join(dir, node.Name+".log"))
		c.Nodes = append(c.Nodes, node)
	}
	for _, node := range c.Nodes {
		conf := fmt.Sprintf("server_name: %s\nlisten: 127.0.0.1:%d\njetstream { store_dir: %q }\n",
			node.Name, node.Port, filepath.Join(node.dir, "js"))
		if n > 1 {
			var routes []string
			for _, other := range c.Nodes {
				if other != node {
					routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", other.ClusterPort))
				}
			}
			conf += fmt.Sprintf("cluster { name: c\n listen: 127.0.0.1:%d\n routes: [%s]\n}\n",
				node.ClusterPort, strings.Join(routes, ", "))
		}
		if err := os.WriteFile(node.confPath, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ports.release()
	for _, node := range c.Nodes {
		node.Start(t)
	}
	c.waitJetStream(t)
	return c
}

// waitJetStream waits until JetStream answers through every node (a
// meta leader is elected in a cluster).
func (c *natsCluster) waitJetStream(t testing.TB) {
	t.Helper()
	for _, node := range c.Nodes {
		if !node.running() {
			continue
		}
		natstest.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
			nc, err := nats.Connect(node.URL(), nats.MaxReconnects(0))
			if err != nil {
				return err
			}
			defer nc.Close()
			js, err := jetstream.New(nc)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if _, err = js.AccountInfo(ctx); err != nil || len(c.Nodes) == 1 {
				return err
			}
			// A meta leader is not enough: every peer must be known before
			// an R3 stream can be placed ("no suitable peers for placement").
			probe := "E2E_PROBE_" + node.Name
			if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: probe, Subjects: []string{"e2e.probe." + node.Name}, Replicas: len(c.Nodes), Storage: jetstream.MemoryStorage}); err != nil {
				return err
			}
			return js.DeleteStream(ctx, probe)
		})
	}
}

// connectJS connects a NATS client for the test's own inspection.
func connectJS(t testing.TB, urls string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(urls, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatalf("connecting to %s: %v", urls, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}
