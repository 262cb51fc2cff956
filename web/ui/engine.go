package ui

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"html/template"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

//go:embed templates/common/*.html templates/views/*.html
var templateFiles embed.FS

//go:embed static
var staticFiles embed.FS

// The views the handlers render. newEngine checks that each is a file of
// templates/views, so a missing one fails at startup, not on a request.
const (
	viewBoard    = "board"
	viewPool     = "pool"
	viewPools    = "pools"
	viewWeek     = "week"
	viewWeekDone = "week_done"
	viewError    = "error"
	viewLogin    = "login"
)

var declaredViews = []string{viewBoard, viewPool, viewPools, viewWeek, viewWeekDone, viewError, viewLogin}

// contentSecurityPolicy allows only this origin's scripts and styles: no
// inline script or style anywhere in the templates.
const contentSecurityPolicy = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// engine renders pages: it holds the parsed views, the static assets, the
// clock pages are stamped with and the logger of template failures. Every
// handler that renders takes it as a dependency.
type engine struct {
	views  map[string]*template.Template
	assets map[string]asset
	now    func() time.Time
	log    zerolog.Logger
}

// asset is one embedded static file.
type asset struct {
	data        []byte
	hash        string // first 16 hex digits of its SHA-256, the cache buster
	contentType string
}

// newEngine loads the static assets and parses every view once, each with
// the common templates (layout and partials). It returns the first error.
func newEngine(now func() time.Time, log zerolog.Logger) (*engine, error) {
	e := &engine{views: make(map[string]*template.Template), assets: make(map[string]asset), now: now, log: log}
	if err := e.loadAssets(); err != nil {
		return nil, err
	}
	common, err := template.New("common").Funcs(e.funcs()).ParseFS(templateFiles, "templates/common/*.html")
	if err != nil {
		return nil, fmt.Errorf("ui: parsing common templates: %w", err)
	}
	entries, err := templateFiles.ReadDir("templates/views")
	if err != nil {
		return nil, fmt.Errorf("ui: reading views: %w", err)
	}
	for _, entry := range entries {
		name := strings.TrimSuffix(entry.Name(), ".html")
		t, err := common.Clone()
		if err != nil {
			return nil, fmt.Errorf("ui: view %s: %w", name, err)
		}
		if t, err = t.ParseFS(templateFiles, "templates/views/"+entry.Name()); err != nil {
			return nil, fmt.Errorf("ui: parsing view %s: %w", name, err)
		}
		if t.Lookup("content") == nil {
			return nil, fmt.Errorf("ui: view %s defines no \"content\" template", name)
		}
		e.views[name] = t
	}
	for _, name := range declaredViews {
		if e.views[name] == nil {
			return nil, fmt.Errorf("ui: view %s is declared but templates/views/%s.html is missing", name, name)
		}
	}
	return e, nil
}

// loadAssets reads every file under static/ and hashes it.
func (e *engine) loadAssets() error {
	return fs.WalkDir(staticFiles, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := staticFiles.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		ct := mime.TypeByExtension(path.Ext(p))
		if ct == "" {
			ct = "application/octet-stream"
		}
		e.assets[strings.TrimPrefix(p, "static/")] = asset{data: data, hash: hex.EncodeToString(sum[:8]), contentType: ct}
		return nil
	})
}

// funcs are the template functions; they are pure formatting.
func (e *engine) funcs() template.FuncMap {
	return template.FuncMap{
		// static returns the URL of an asset with its hash, so it can be
		// cached for good; an unknown asset is a template error.
		"static": func(name string) (string, error) {
			a, ok := e.assets[name]
			if !ok {
				return "", fmt.Errorf("no static asset %q", name)
			}
			return "/ui/static/" + name + "?v=" + a.hash, nil
		},
		"datetime": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05") },
		"isotime":  func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
		"hhmm":     func(t time.Time) string { return t.UTC().Format("15:04") },
		"day":      func(t time.Time) string { return t.UTC().Format("Mon 2 Jan") },
		"neg":      func(n int) int { return -n },
	}
}

// render executes a view's layout into a buffer and writes it with status;
// a template error becomes a clean 500 instead of half a page.
func (e *engine) render(w http.ResponseWriter, r *http.Request, status int, view string, data any) {
	e.execute(w, r, status, view, "layout", data)
}

// renderFragment executes one named template of a view, without layout.
func (e *engine) renderFragment(w http.ResponseWriter, r *http.Request, status int, view, name string, data any) {
	e.execute(w, r, status, view, name, data)
}

func (e *engine) execute(w http.ResponseWriter, r *http.Request, status int, view, name string, data any) {
	var buf bytes.Buffer
	t := e.views[view]
	err := fmt.Errorf("no view %q", view)
	if t != nil {
		err = t.ExecuteTemplate(&buf, name, data)
	}
	h := w.Header()
	setPageHeaders(h)
	if err != nil {
		e.log.Error().Err(err).Str("view", view).Str("template", name).Str("path", r.URL.Path).Msg("ui: template failed")
		h.Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte("Internal error: the page could not be rendered.\n"))
		return
	}
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Length", fmt.Sprint(buf.Len()))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(buf.Bytes())
	}
}

// setPageHeaders sets the headers of every page: no caching of live
// figures, no sniffing, no framing, and a Referer on same-origin requests
// (the POST origin check falls back on it).
func setPageHeaders(h http.Header) {
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Content-Security-Policy", contentSecurityPolicy)
}

// static serves the embedded assets. A request carrying the asset's hash
// may be cached for good; any other is revalidated with the ETag.
func (e *engine) static() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(r.URL.Path, "/ui/static/")
		a, ok := e.assets[name]
		if !ok || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		h.Set("Content-Type", a.contentType)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("ETag", `"`+a.hash+`"`)
		if r.URL.Query().Get("v") == a.hash {
			h.Set("Cache-Control", "public, max-age=31536000, immutable")
		} else {
			h.Set("Cache-Control", "no-cache")
		}
		http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(a.data))
	}
}
