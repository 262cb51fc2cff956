package natsapi

import (
	"context"
	"strings"

	"github.com/capacityd/capacityd/web"
	"github.com/nats-io/nats.go/micro"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// startSpan continues the W3C trace of a request's headers (traceparent,
// tracestate; NATS header names are case-sensitive, so any case is taken)
// in a server span for the operation. Without an SDK installed the span
// is the caller's span context, passed on unchanged to the write side.
func startSpan(ctx context.Context, op string, req micro.Request) (context.Context, trace.Span) {
	carrier := propagation.MapCarrier{}
	for k, v := range req.Headers() {
		if len(v) > 0 {
			carrier[strings.ToLower(k)] = v[0]
		}
	}
	ctx = propagation.TraceContext{}.Extract(ctx, carrier)
	return otel.Tracer("github.com/capacityd/capacityd/web/natsapi").Start(ctx, ServiceName+"."+op,
		trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(attribute.String("messaging.destination.name", req.Subject())))
}

// endSpan ends a request's span; a refusal is an error only when internal
// or unavailable (a 5xx), as for HTTP.
func endSpan(span trace.Span, err error) {
	if err != nil && span.IsRecording() {
		p := web.ProblemOf(err, "")
		if p.Status >= 500 {
			span.SetStatus(codes.Error, p.Code)
		}
		span.SetAttributes(attribute.String("capacity.problem", p.Code))
	}
	span.End()
}
