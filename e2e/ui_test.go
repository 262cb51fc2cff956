package e2e

import (
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// plannerService is the real capacityd binary serving the planner UI and
// the API at URL.
type plannerService struct {
	URL, Mode string
	NATSURL   string // its embedded NATS, region "local"
}

// startPlanner starts the real binary and checks that it serves the
// planner at /: a binary that lost the UI fails the test.
func startPlanner(t *testing.T) plannerService {
	t.Helper()
	c := startCapacityd(t, capacitydOpts{Name: "planner"})
	if !servesPlanner(c.HTTPURL) {
		t.Fatalf("capacityd at %s does not serve the planner board at /", c.HTTPURL)
	}
	return plannerService{URL: c.HTTPURL, Mode: "binary", NATSURL: c.NATSURL}
}

// servesPlanner reports whether GET / answers the planner's board.
func servesPlanner(base string) bool {
	res, err := http.Get(base + "/")
	if err != nil {
		return false
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	return res.StatusCode == http.StatusOK && strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") &&
		strings.Contains(string(body), `id="live"`)
}

// chromiumPath finds the browser: $CHROMIUM_BIN, else Debian's chromium.
func chromiumPath() string {
	if p := os.Getenv("CHROMIUM_BIN"); p != "" {
		return p
	}
	for _, p := range []string{"/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	return ""
}

// browser is a headless chromium driven by chromedp, with a directory for
// its screenshots and log.
type browser struct {
	t         *testing.T
	ctx       context.Context // the first tab; its first Run started the browser
	artifacts string
}

// startBrowser starts chromium with a fresh profile; it stops when the test
// ends. A missing chromium fails the test: the UI is not tested without it.
func startBrowser(t *testing.T) *browser {
	t.Helper()
	path := chromiumPath()
	if path == "" {
		t.Fatalf("chromium not found (looked at $CHROMIUM_BIN, /usr/bin/chromium, /usr/bin/chromium-browser, /usr/bin/google-chrome): " +
			"install it with `apt-get install -y chromium` (.ci/run does) to run the planner's browser tests")
	}
	dir := uiArtifacts(t)
	profile := t.TempDir() // removed after the browser stops: cleanups run last-in first-out
	browserLog, err := os.Create(filepath.Join(dir, "chromium.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { browserLog.Close() })
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1366, 900),
		chromedp.CombinedOutput(browserLog),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(allocCtx)
	t.Cleanup(func() { cancelTab(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil { // starts the browser, on a context without a timeout
		t.Fatalf("starting chromium at %s: %v (log in %s)", path, err, browserLog.Name())
	}
	return &browser{t: t, ctx: ctx, artifacts: dir}
}

// uiArtifacts is where screenshots go: $CAPACITY_ARTIFACTS/<test> when
// set, so they outlive the test, else a temporary directory.
func uiArtifacts(t *testing.T) string {
	t.Helper()
	root := os.Getenv("CAPACITY_ARTIFACTS")
	if root == "" {
		return t.TempDir()
	}
	dir := filepath.Join(root, strings.ReplaceAll(t.Name(), "/", "_"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// tab opens another tab of the same browser; it closes when the test ends.
func (b *browser) tab() context.Context {
	ctx, cancel := chromedp.NewContext(b.ctx)
	b.t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		b.t.Fatalf("opening a tab: %v", err)
	}
	return ctx
}

// do runs steps in a tab within a time limit; on failure it saves a
// screenshot of the tab and fails the test.
func (b *browser) do(tab context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(tab, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		shot := b.screenshot(tab, "failed-"+strings.ReplaceAll(what, " ", "-"))
		b.t.Fatalf("%s: %v (screenshot %s)", what, err, shot)
	}
}

// text returns the text of the first element matching sel.
func (b *browser) text(tab context.Context, sel string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(tab, 20*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		b.t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

// eval evaluates a JavaScript expression in a tab.
func eval[T any](b *browser, tab context.Context, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(tab, 20*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.t.Fatalf("evaluating %s: %v", expr, err)
	}
	return v
}

// screenshot saves a full-page PNG of the tab and returns its path.
func (b *browser) screenshot(tab context.Context, name string) string {
	ctx, cancel := context.WithTimeout(tab, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return ""
	}
	path := filepath.Join(b.artifacts, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return ""
	}
	return path
}
