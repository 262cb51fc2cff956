package web

import (
	"net/http"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// traced continues the caller's W3C trace (traceparent, tracestate) in a
// server span named after the route, and puts it in the request's context:
// the write side carries it into the commit's message headers (see
// capacity/pools/trace.go). With no OpenTelemetry SDK installed the span
// is the caller's own span context, passed through unchanged.
//
// With exporting off, a request without a traceparent has no trace to
// continue and no span to record: it skips the middleware (a span, its
// attributes and a copy of the request were about 2% of a hold's CPU).
func traced(exporting bool) func(http.Handler) http.Handler {
	tracer := otel.Tracer("github.com/capacityd/capacityd/web")
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !exporting && r.Header.Get("traceparent") == "" {
				next.ServeHTTP(w, r)
				return
			}
			ctx := propagation.TraceContext{}.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
			ctx, span := tracer.Start(ctx, r.Method, trace.WithSpanKind(trace.SpanKindServer),
				trace.WithAttributes(attribute.String("http.request.method", r.Method), attribute.String("url.path", r.URL.Path)))
			defer span.End()
			rec := &recorder{ResponseWriter: w}
			next.ServeHTTP(rec, r.WithContext(ctx))
			if !span.IsRecording() {
				return
			}
			status := rec.status
			if status == 0 {
				status = http.StatusOK
			}
			span.SetName(r.Method + " " + routeOf(r))
			span.SetAttributes(attribute.String("http.route", routeOf(r)), attribute.Int("http.response.status_code", status))
			if status >= 500 {
				span.SetStatus(codes.Error, http.StatusText(status))
			}
		})
	}
}
