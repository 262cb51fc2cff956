package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/capacityd/capacityd/capacity"
	"github.com/capacityd/capacityd/streams/natstest"
)

// startTest runs the whole service in-process on free ports and a temp dir.
func startTest(t *testing.T, extra ...string) *app {
	t.Helper()
	a, _ := startTestIn(t, t.TempDir(), extra...)
	return a
}

// startTestIn runs the whole service in-process on free ports over dataDir
// and returns it with a function that stops it (also run at cleanup).
func startTestIn(t testing.TB, dataDir string, extra ...string) (*app, func()) {
	t.Helper()
	return startTestConfig(t, dataDir, nil, extra...)
}

// startTestConfig is startTestIn with edit, if not nil, applied to the
// configuration parsed from the flags (for settings with no flag).
func startTestConfig(t testing.TB, dataDir string, edit func(*Config), extra ...string) (*app, func()) {
	t.Helper()
	args := append([]string{"--http", "127.0.0.1:0", "--nats-listen", "127.0.0.1:0", "--data", dataDir, "--sync", "interval"}, extra...)
	cfg, err := parseConfig("test", args, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	cfg.SweepEvery = 200 * time.Millisecond
	if edit != nil {
		edit(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := start(ctx, cfg, io.Discard)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.wait(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("wait: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return a, stop
}

func call(t *testing.T, method, url, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	var out map[string]any
	if len(bytes.TrimSpace(raw)) > 0 && raw[0] == '{' {
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatalf("%s %s: %v in %s", method, url, err, raw)
		}
	}
	return res.StatusCode, out
}

func TestServeWiresWritesAndReadModels(t *testing.T) {
	a := startTest(t)
	base := a.HTTPURL
	start := time.Now().Add(48 * time.Hour).UTC().Truncate(time.Hour)
	def := `{"region":"north","kind":"delivery","starts_at":"` + start.Format(time.RFC3339) + `","ends_at":"` + start.Add(time.Hour).Format(time.RFC3339) + `","capacity":4}`
	if code, body := call(t, "PUT", base+"/v1/pools/n1", def); code != http.StatusCreated {
		t.Fatalf("define: %d %v", code, body)
	}
	code, hold := call(t, "POST", base+"/v1/pools/n1/holds", `{"reservation_id":"order-1","quantity":3,"ttl":"1h"}`)
	if code != http.StatusCreated {
		t.Fatalf("hold: %d %v", code, hold)
	}
	version := uint64(hold["pool_version"].(float64))

	// Reading one's own write through the read models.
	code, avail := call(t, "GET", base+"/v1/availability?region=north&min_position="+itoa(version), "")
	if code != http.StatusOK {
		t.Fatalf("availability: %d %v", code, avail)
	}
	pools := avail["pools"].([]any)
	if len(pools) != 1 || pools[0].(map[string]any)["held"] != 3.0 || pools[0].(map[string]any)["available"] != 1.0 {
		t.Fatalf("availability after the hold = %v", avail)
	}
	if got := uint64(avail["position"].(float64)); got < version {
		t.Fatalf("availability position %d < write version %d", got, version)
	}
	code, found := call(t, "GET", base+"/v1/reservations/order-1?min_position="+itoa(version), "")
	if code != http.StatusOK {
		t.Fatalf("lookup: %d %v", code, found)
	}
	if rs := found["reservations"].([]any); len(rs) != 1 || rs[0].(map[string]any)["pool"] != "n1" {
		t.Fatalf("lookup = %v", found)
	}
	if code, body := call(t, "GET", base+"/v1/reservations/nobody", ""); code != http.StatusNotFound {
		t.Fatalf("lookup of unknown id: %d %v", code, body)
	}
	// A position that never comes times out cleanly.
	code, problem := call(t, "GET", base+"/v1/availability?min_position="+itoa(version+1000), "")
	if code != http.StatusServiceUnavailable || !strings.HasSuffix(problem["type"].(string), "/unavailable") {
		t.Fatalf("availability at a future position: %d %v", code, problem)
	}
	code, ready := call(t, "GET", base+"/readyz", "")
	if code != http.StatusOK {
		t.Fatalf("readyz: %d %v", code, ready)
	}
	if rm, ok := ready["read_models"].(map[string]any); !ok || rm["durable"] == "" {
		t.Fatalf("readyz lacks read model detail: %v", ready)
	}
}

func TestBadFlagsAreUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--region", "no/slash"}, {"--sync", "sometimes"}, {"--http", "nonsense"}, {"--replicas", "0"}, {"--bogus"},
		{"--log-format", "xml"}, {"extra-arg"},
		{"--peer-regions", "a,a"}, {"--region", "a", "--peer-regions", "A"}, {"--peer-regions", "x.y"},
		{"--leafnode-listen", "nohost"}, {"--leafnode-remote", "127.0.0.1:7422"},
		{"--nats-url", "nats://127.0.0.1:4222", "--leafnode-listen", "127.0.0.1:0"},
	} {
		err := run(context.Background(), args, func(string) string { return "" }, io.Discard, io.Discard)
		if code := exitCode(err, io.Discard); code != 2 {
			t.Errorf("run %v: exit %d (%v), want 2", args, code, err)
		}
	}
	env := map[string]string{"CAPACITY_REPLICAS": "three"}
	err := run(context.Background(), nil, func(k string) string { return env[k] }, io.Discard, io.Discard)
	if code := exitCode(err, io.Discard); code != 2 {
		t.Errorf("bad env: exit %d (%v), want 2", code, err)
	}
}

func TestUnusableDataDir(t *testing.T) {
	file := t.TempDir() + "/file"
	if err := writeFile(file); err != nil {
		t.Fatal(err)
	}
	err := run(context.Background(), []string{"--data", file + "/sub", "--http", "127.0.0.1:0", "--nats-listen", "127.0.0.1:0"},
		func(string) string { return "" }, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--data") {
		t.Fatalf("run with a file as data dir: %v", err)
	}
	if code := exitCode(err, io.Discard); code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
}

// A hold that lapses while its pool is not loaded (here: across a restart)
// still gets its Expired event, and the board stops counting it.
func TestLapsedHoldsAreSweptAfterRestart(t *testing.T) {
	dir := t.TempDir()
	first, stopFirst := startTestIn(t, dir)
	start := time.Now().Add(48 * time.Hour).UTC().Truncate(time.Hour)
	def := `{"region":"north","kind":"delivery","starts_at":"` + start.Format(time.RFC3339) + `","ends_at":"` + start.Add(time.Hour).Format(time.RFC3339) + `","capacity":4}`
	if code, body := call(t, "PUT", first.HTTPURL+"/v1/pools/s1", def); code != http.StatusCreated {
		t.Fatalf("define: %d %v", code, body)
	}
	if code, body := call(t, "POST", first.HTTPURL+"/v1/pools/s1/holds", `{"reservation_id":"short","quantity":1,"ttl":"1s"}`); code != http.StatusCreated {
		t.Fatalf("hold: %d %v", code, body)
	}
	stopFirst()

	second, _ := startTestIn(t, dir)
	natstest.CheckFor(t, 15*time.Second, 50*time.Millisecond, func() error {
		_, page := call(t, "GET", second.HTTPURL+"/v1/pools/s1/events", "")
		var types []string
		for _, e := range page["events"].([]any) {
			types = append(types, e.(map[string]any)["type"].(string))
		}
		if types[len(types)-1] != "capacity.reservation.expired" {
			return fmt.Errorf("no Expired event for the lapsed hold after restart: %v", types)
		}
		return nil
	})
}

// Two embedded instances on one data directory would each think they own
// its files (they overbooked and lost acknowledged holds): the second must
// refuse to start, and say what to do instead. Once the first stops, the
// directory is free again.
func TestSecondInstanceOnOneDataDirRefused(t *testing.T) {
	dir := t.TempDir()
	_, stop := startTestIn(t, dir)

	cfg, err := parseConfig("test", []string{"--http", "127.0.0.1:0", "--nats-listen", "127.0.0.1:0", "--data", dir}, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	a, err := start(context.Background(), cfg, io.Discard)
	if err == nil {
		a.wait(canceled())
		t.Fatal("a second instance started on a data directory in use")
	}
	for _, want := range []string{"in use", "--nats-url"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}

	stop()
	startTestIn(t, dir) // the lock went with the first instance
}

func canceled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

// A NATS port already taken fails the start at once, saying which flag.
func TestNATSPortInUseFailsFast(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	began := time.Now()
	err = run(context.Background(), []string{"--data", t.TempDir(), "--http", "127.0.0.1:0", "--nats-listen", ln.Addr().String()},
		func(string) string { return "" }, io.Discard, io.Discard)
	if took := time.Since(began); took > time.Second {
		t.Errorf("failing took %s, want under a second", took)
	}
	if err == nil || !strings.Contains(err.Error(), "--nats-listen "+ln.Addr().String()) || !strings.Contains(err.Error(), "--nats-url") {
		t.Fatalf("err = %v, want one naming --nats-listen and the way out", err)
	}
}

// capacityd --help lists the subcommands before serve's flags, and exits 0.
func TestHelpListsSubcommands(t *testing.T) {
	var out bytes.Buffer
	err := run(context.Background(), []string{"--help"}, func(string) string { return "" }, &out, &out)
	if code := exitCode(err, io.Discard); code != 0 {
		t.Fatalf("exit %d (%v)", code, err)
	}
	for _, want := range []string{"capacityd bench", "capacityd [serve]", "capacityd help", "-tokens", "-rate-limit", "-http"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--help lacks %q:\n%s", want, out.String())
		}
	}
}

// Logs are JSON into anything but a terminal unless asked otherwise, and
// an explicit console format writes no colour codes into a file.
func TestLogFormat(t *testing.T) {
	for _, tc := range []struct{ format, want string }{{"auto", `{"level":"info"`}, {"json", `{"level":"info"`}, {"console", "INF hello"}} {
		var buf bytes.Buffer
		cfg := DefaultConfig()
		cfg.LogFormat = tc.format
		log, err := newLogger(cfg, &buf)
		if err != nil {
			t.Fatal(err)
		}
		log.Info().Msg("hello")
		if got := buf.String(); !strings.Contains(got, tc.want) || strings.Contains(got, "\x1b[") {
			t.Errorf("--log-format %s wrote %q, want %q and no escape codes", tc.format, got, tc.want)
		}
	}
}

// serve prints where the API, UI, OpenAPI document and NATS are.
func TestServePrintsURLs(t *testing.T) {
	a := startTest(t)
	var out bytes.Buffer
	a.printURLs(&out)
	for _, want := range []string{a.HTTPURL + "/v1/", a.HTTPURL + "/\n", a.HTTPURL + "/openapi.json", a.NATSURL} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("printed URLs lack %q:\n%s", want, out.String())
		}
	}
}

// With --pprof-listen, runtime profiles are served on their own listener,
// which the token check of the API does not cover (it is apart so that an
// operator binds it to loopback), and printed with the other URLs; the
// API's router has no /debug/pprof route.
func TestPprofListen(t *testing.T) {
	dir := t.TempDir()
	file := dir + "/tokens"
	if err := os.WriteFile(file, []byte("admin admin-token-0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a := startTest(t, "--pprof-listen", "127.0.0.1:0", "--tokens", file)
	if !strings.HasPrefix(a.PprofURL, "http://127.0.0.1:") {
		t.Fatalf("PprofURL = %q", a.PprofURL)
	}
	res, err := http.Get(a.PprofURL + "goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !strings.Contains(string(body), "goroutine profile:") {
		t.Fatalf("goroutine profile: %d %.200s", res.StatusCode, body)
	}
	var out bytes.Buffer
	a.printURLs(&out)
	if !strings.Contains(out.String(), a.PprofURL) {
		t.Errorf("printed URLs lack %q:\n%s", a.PprofURL, out.String())
	}
	res, err = http.Get(a.HTTPURL + "/debug/pprof/")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode == http.StatusOK {
		t.Errorf("the API listener serves /debug/pprof/")
	}
}

// Under --sync always each append waits for a group fsync round, and
// /metrics counts the rounds with their durations.
func TestFsyncRoundsOnMetrics(t *testing.T) {
	a := startTest(t, "--sync", "always")
	start := time.Now().Add(24 * time.Hour)
	if _, err := a.pools.Execute(context.Background(), "fs-1", capacity.DefinePool{Pool: "fs-1", Region: "r", Kind: "delivery",
		StartsAt: start, EndsAt: start.Add(time.Hour), Capacity: 1}); err != nil {
		t.Fatal(err)
	}
	res, err := http.Get(a.HTTPURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(res.Body)
	res.Body.Close()
	var rounds float64
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "capacity_fsync_round_seconds_count "); ok {
			rounds, _ = strconv.ParseFloat(v, 64)
		}
	}
	if rounds < 1 {
		t.Fatalf("capacity_fsync_round_seconds_count = %v after an append under --sync always", rounds)
	}
}

// With --tokens, routes need a bearer token; Reload (what SIGHUP calls)
// puts a rewritten file in force, and a broken one leaves the old tokens.
func TestTokensReloadOnSIGHUP(t *testing.T) {
	dir := t.TempDir()
	file := dir + "/tokens"
	write := func(content string) {
		if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	const oldToken, newToken = "old-planner-token-0123456789", "new-planner-token-0123456789"
	write("planner " + oldToken + "\n")
	a := startTest(t, "--tokens", file, "--rate-limit", "100")
	get := func(token string) int {
		req, _ := http.NewRequest("GET", a.HTTPURL+"/v1/pools/x/events", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if got := get(oldToken); got != http.StatusNotFound {
		t.Fatalf("old token before reload: %d, want 404 (let through)", got)
	}
	write("planner " + newToken + "\n")
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	if got, want := get(oldToken), http.StatusUnauthorized; got != want {
		t.Errorf("old token after reload: %d, want %d", got, want)
	}
	if got, want := get(newToken), http.StatusNotFound; got != want {
		t.Errorf("new token after reload: %d, want %d", got, want)
	}
	write("chief " + oldToken + "\n")
	if err := a.Reload(); err == nil {
		t.Errorf("a broken file reloaded")
	}
	if got, want := get(newToken), http.StatusNotFound; got != want {
		t.Errorf("new token after a failed reload: %d, want %d", got, want)
	}
	if code, _ := call(t, "GET", a.HTTPURL+"/healthz", ""); code != http.StatusOK {
		t.Errorf("/healthz with tokens: %d", code)
	}
}
