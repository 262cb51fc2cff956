package web

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/capacityd/capacityd/capacity"
	"github.com/go-chi/chi/v5"
	"github.com/rs/zerolog"
)

// RequestIDHeader carries a request's id in and out.
const RequestIDHeader = "X-Request-Id"

// requestScope is what withRequestID puts in a request's context: its id
// and the service's logger. The logger carrying the id is made only when
// something logs through RequestLogger (an error, a panic): made for every
// request, it cost an allocation of the logger's whole context per hold,
// and the one line per request (observe) adds the id to its event instead.
type requestScope struct {
	id   string
	base *zerolog.Logger
	once sync.Once
	log  zerolog.Logger // base with request_id, once made
}

type requestScopeKey struct{}

// requestIDFrom returns the request id middleware stored in ctx.
func requestIDFrom(ctx context.Context) string {
	if s, _ := ctx.Value(requestScopeKey{}).(*requestScope); s != nil {
		return s.id
	}
	return ""
}

// RequestLogger returns the logger of the request whose context ctx is,
// with its request_id; outside the web middleware, the logger zerolog.Ctx
// finds (a disabled one if none).
func RequestLogger(ctx context.Context) *zerolog.Logger {
	s, _ := ctx.Value(requestScopeKey{}).(*requestScope)
	if s == nil {
		return zerolog.Ctx(ctx)
	}
	s.once.Do(func() { s.log = s.base.With().Str("request_id", s.id).Logger() })
	return &s.log
}

// requestIDs makes request ids: a random per-process prefix and a counter,
// unique without a syscall per request.
type requestIDs struct {
	prefix string
	next   atomic.Uint64
}

func newRequestIDs() *requestIDs {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return &requestIDs{prefix: hex.EncodeToString(b)}
}

func (g *requestIDs) new() string {
	return g.prefix + "-" + strconv.FormatUint(g.next.Add(1), 10)
}

// validRequestID accepts a client's id if it is short and plain.
func validRequestID(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':') {
			return false
		}
	}
	return true
}

// withRequestID takes the client's X-Request-Id, or makes one, echoes it
// and puts it, and a logger carrying it, in the request's context.
func withRequestID(log zerolog.Logger) func(http.Handler) http.Handler {
	ids := newRequestIDs()
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			id := r.Header.Get(RequestIDHeader)
			if !validRequestID(id) {
				id = ids.new()
			}
			w.Header().Set(RequestIDHeader, id)
			ctx := context.WithValue(r.Context(), requestScopeKey{}, &requestScope{id: id, base: &log})
			next.ServeHTTP(w, r.WithContext(ctx))
		})
	}
}

// recorder remembers the status and size of a response.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

// WriteHeader records the first status written.
func (rec *recorder) WriteHeader(status int) {
	if rec.status == 0 {
		rec.status = status
	}
	rec.ResponseWriter.WriteHeader(status)
}

// Write counts the bytes of the body.
func (rec *recorder) Write(b []byte) (int, error) {
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	n, err := rec.ResponseWriter.Write(b)
	rec.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (rec *recorder) Unwrap() http.ResponseWriter { return rec.ResponseWriter }

// Flush implements http.Flusher for streaming handlers.
func (rec *recorder) Flush() {
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	_ = http.NewResponseController(rec.ResponseWriter).Flush()
}

// routeOf returns the chi route pattern that served r, which bounds the
// cardinality of logs and metrics, or "unmatched".
func routeOf(r *http.Request) string {
	if rctx := chi.RouteContext(r.Context()); rctx != nil {
		if p := rctx.RoutePattern(); p != "" && p != "/*" {
			return p
		}
	}
	return "unmatched"
}

// observe writes one log line per request and feeds the HTTP metrics. It
// runs inside the router, so the route pattern is known once next returns.
func observe(m *metrics, log zerolog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			rec := &recorder{ResponseWriter: w}
			defer func() {
				took := time.Since(start)
				if rec.status == 0 {
					rec.status = http.StatusOK
				}
				route := routeOf(r)
				m.observeRequest(route, r.Method, rec.status, took)
				ev := log.Info()
				if rec.status >= 500 {
					ev = log.Warn()
				}
				ev.Str("request_id", requestIDFrom(r.Context())).Str("method", r.Method).Str("route", route).Int("status", rec.status).
					Int64("bytes", rec.bytes).Dur("latency", took).Msg("request")
			}()
			next.ServeHTTP(rec, r)
		})
	}
}

// recoverPanics turns a panic in a handler into a logged 500 problem.
// http.ErrAbortHandler is passed on: it asks the server to drop the
// connection.
func recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &recorder{ResponseWriter: w}
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler {
				panic(v)
			}
			RequestLogger(r.Context()).Error().Str("panic", fmt.Sprint(v)).Bytes("stack", debug.Stack()).
				Str("method", r.Method).Str("path", r.URL.Path).Msg("handler panicked")
			if rec.status != 0 {
				panic(http.ErrAbortHandler) // half a response went out: drop the connection
			}
			Error(rec, r, capacity.Errorf(capacity.EINTERNAL, "Internal error."))
		}()
		next.ServeHTTP(rec, r)
	})
}

// limitBody bounds request bodies to limit bytes: a declared length over
// it is refused at once with 413, a longer body fails decode with 413.
func limitBody(limit int64) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.ContentLength > limit {
				Error(w, r, &requestError{code: codeTooLarge, detail: fmt.Sprintf("request body is larger than %d bytes", limit)})
				return
			}
			if r.Body != nil {
				r.Body = http.MaxBytesReader(w, r.Body, limit)
			}
			next.ServeHTTP(w, r)
		})
	}
}
