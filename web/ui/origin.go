package ui

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// sameOrigin refuses a state-changing request that a browser did not send
// from one of our own pages: its Origin header, or failing that its
// Referer, must name this host (or a trusted origin). Browsers send Origin
// with every cross-site POST, and the pages ask for a same-origin Referer
// (Referrer-Policy), so a form on another site cannot act here. A request
// with neither header is refused too: it is not one of our forms.
func sameOrigin(e *engine, trusted []string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			source := r.Header.Get("Origin")
			if source == "" {
				source = r.Header.Get("Referer")
			}
			if !allowedOrigin(source, r.Host, trusted) {
				e.renderError(w, r, http.StatusForbidden,
					"This form was not sent from a page of this planner (its Origin or Referer names another site, or none), so it was not applied. Open the page here and submit it again.", "/")
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// allowedOrigin reports whether an Origin or Referer value names host or
// one of the trusted origins.
func allowedOrigin(source, host string, trusted []string) bool {
	if source == "" || source == "null" {
		return false
	}
	u, err := url.Parse(source)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return false
	}
	if strings.EqualFold(u.Host, host) {
		return true
	}
	origin := strings.ToLower(u.Scheme + "://" + u.Host)
	return slices.ContainsFunc(trusted, func(t string) bool { return strings.ToLower(strings.TrimSuffix(t, "/")) == origin })
}

// joinProblems renders field problems as one line, for a problem detail.
func joinProblems(problems map[string]string) string {
	keys := sortedKeys(boolSet(problems))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + ": " + problems[k]
	}
	return strings.Join(parts, "; ")
}

func boolSet(m map[string]string) map[string]bool {
	s := make(map[string]bool, len(m))
	for k := range m {
		s[k] = true
	}
	return s
}
