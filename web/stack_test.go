package web

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/capacityd/capacityd/capacity/pools"
	"github.com/capacityd/capacityd/capacity/pools/poolstest"
	"github.com/capacityd/capacityd/e2e/stacktest"
	"github.com/capacityd/capacityd/streams"
	"github.com/capacityd/capacityd/streams/natstest"
	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// epoch is where the stack's clock starts.
var epoch = time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)

// stack is the real thing behind the handler: an embedded NATS server,
// the JetStream event store, KV snapshots and the pools service.
type stack struct {
	clock   *poolstest.Clock
	svc     *pools.Service
	history *streams.PoolEvents
	reg     *prometheus.Registry
	logs    *poolstest.LogBuffer
	handler http.Handler
}

// stackOptions adjust the Config a stack serves with.
type stackOption func(*Config)

// newStack starts the real stack and the HTTP API over it.
func newStack(t testing.TB, opts ...stackOption) *stack {
	t.Helper()
	s := &stack{clock: poolstest.NewClock(epoch), reg: prometheus.NewRegistry(), logs: &poolstest.LogBuffer{}}
	metrics := pools.NewMetrics(s.reg)
	st := stacktest.NewStack(t, natstest.RunServer(t), "test", pools.Options{Now: s.clock.Now, OnAppend: metrics.OnAppend})
	metrics.Watch(st.Service)
	s.svc, s.history = st.Service, st.Events
	cfg := Config{
		Pools: s.svc, History: s.history, Logger: zerolog.New(s.logs),
		Registry: s.reg, Now: s.clock.Now,
	}
	for _, o := range opts {
		o(&cfg)
	}
	s.handler = NewServer(cfg)
	return s
}

// response is an answer read in full.
type response struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body into a map.
func (r response) JSON(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("body %q: %v", r.Body, err)
	}
	return m
}

// req describes one request of a test.
type req struct {
	method, path, body string
	header             map[string]string
	chunked            bool // send the body without a Content-Length
}

// do serves one request and checks the answer against the OpenAPI
// document whenever the request is for a documented operation.
func do(t testing.TB, h http.Handler, rq req) response {
	t.Helper()
	var body io.Reader
	if rq.body != "" {
		body = strings.NewReader(rq.body)
		if rq.chunked {
			body = io.MultiReader(body) // hides the length
		}
	}
	r := httptest.NewRequest(rq.method, rq.path, body)
	if rq.chunked {
		r.ContentLength = -1
	}
	for k, v := range rq.header {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	res := response{Status: w.Code, Header: w.Header(), Body: w.Body.Bytes()}
	validateResponse(t, r, res)
	return res
}

var openAPI struct {
	once   sync.Once
	doc    *openapi3.T
	router routers.Router
	err    error
}

// loadOpenAPI loads and validates the embedded document once.
func loadOpenAPI(t testing.TB) (*openapi3.T, routers.Router) {
	t.Helper()
	openAPI.once.Do(func() {
		doc, err := openapi3.NewLoader().LoadFromData(OpenAPI)
		if err == nil {
			err = doc.Validate(context.Background())
		}
		if err != nil {
			openAPI.err = err
			return
		}
		openAPI.doc = doc
		openAPI.router, openAPI.err = legacy.NewRouter(doc)
	})
	if openAPI.err != nil {
		t.Fatalf("openapi.json: %v", openAPI.err)
	}
	return openAPI.doc, openAPI.router
}

// validateResponse fails the test if res is not what the document says
// the operation answers (status included). Requests for no documented
// operation (unknown routes, wrong methods) are not checked here.
func validateResponse(t testing.TB, r *http.Request, res response) {
	t.Helper()
	_, router := loadOpenAPI(t)
	route, params, err := router.FindRoute(r)
	if err != nil {
		return
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{
			Request: r, PathParams: params, Route: route,
			Options: &openapi3filter.Options{ExcludeRequestBody: true},
		},
		Status:  res.Status,
		Header:  res.Header,
		Body:    io.NopCloser(bytes.NewReader(res.Body)),
		Options: &openapi3filter.Options{IncludeResponseStatus: true},
	}
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		t.Errorf("%s %s -> %d %s: response does not match openapi.json: %v", r.Method, r.URL, res.Status, res.Body, err)
	}
}

// wantProblem fails the test unless res is a problem of the given status
// and code.
func wantProblem(t testing.TB, res response, status int, code string) map[string]any {
	t.Helper()
	if got, want := res.Header.Get("Content-Type"), "application/problem+json"; got != want {
		t.Errorf("Content-Type = %q, want %q (body %s)", got, want, res.Body)
	}
	if res.Status != status {
		t.Errorf("status = %d, want %d (body %s)", res.Status, status, res.Body)
	}
	p := res.JSON(t)
	if got, want := p["type"], ProblemTypeBase+code; got != want {
		t.Errorf("type = %v, want %v (body %s)", got, want, res.Body)
	}
	if got, want := p["status"], float64(status); got != want {
		t.Errorf("problem status = %v, want %v", got, want)
	}
	for _, k := range []string{"title", "detail"} {
		if s, _ := p[k].(string); s == "" {
			t.Errorf("problem has no %s: %s", k, res.Body)
		}
	}
	return p
}

// wantStatus fails the test unless res has the given status.
func wantStatus(t testing.TB, res response, status int) {
	t.Helper()
	if res.Status != status {
		t.Fatalf("status = %d, want %d (body %s)", res.Status, status, res.Body)
	}
}
