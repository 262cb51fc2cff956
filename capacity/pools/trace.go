package pools

import (
	"context"
	"reflect"
	"sync/atomic"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Tracing through the group commit: each command remembers its caller's
// span context (Execute); the append of a batch runs in a span whose
// parent is the first writing caller's and which links every other writing
// caller's, and the store writes that span's traceparent into the commit's
// message (streams.TraceHeader). Without an OpenTelemetry SDK installed the
// tracer is a no-op: the append "span" is then the first caller's own span
// context, so an incoming traceparent still reaches the stream.

// tracer is the write side's tracer, from the global provider (a no-op
// until cmd/capacityd installs an SDK). Looking one up takes the global
// provider's lock and a map lookup, measured at about 4% of a hold's CPU,
// so the last one is kept for as long as the global provider stays the
// same (a tracer taken from the global provider before an SDK is installed
// would delegate to the first SDK only, not to one installed later).
func tracer() trace.Tracer {
	p := otel.GetTracerProvider()
	if !reflect.TypeOf(p).Comparable() { // == on it would panic
		return p.Tracer("github.com/capacityd/capacityd/capacity/pools")
	}
	if c := lastTracer.Load(); c != nil && c.provider == p {
		return c.tracer
	}
	t := p.Tracer("github.com/capacityd/capacityd/capacity/pools")
	lastTracer.Store(&providerTracer{provider: p, tracer: t})
	return t
}

type providerTracer struct {
	provider trace.TracerProvider
	tracer   trace.Tracer
}

var lastTracer atomic.Pointer[providerTracer]

// maxLinks bounds the links of one append span (a batch holds at most
// MaxBatch commands).
const maxLinks = 128

// startAppend starts the span of a batch's append: a child of the first
// writing caller's span, linking the other writing callers.
func startAppend(ctx context.Context, pool string, batch []*request, decisions []decision) (context.Context, trace.Span) {
	var parent trace.SpanContext
	var links []trace.Link
	for i, r := range batch {
		if decisions[i].events == 0 || !r.span.IsValid() {
			continue
		}
		if !parent.IsValid() {
			parent = r.span
		} else if len(links) < maxLinks && !r.span.Equal(parent) {
			links = append(links, trace.Link{SpanContext: r.span})
		}
	}
	if parent.IsValid() {
		ctx = trace.ContextWithRemoteSpanContext(ctx, parent)
	}
	return tracer().Start(ctx, "capacity.append", trace.WithSpanKind(trace.SpanKindProducer), trace.WithLinks(links...),
		trace.WithAttributes(attribute.String("capacity.pool", pool), attribute.Int("capacity.commands", len(batch))))
}

// endAppend ends an append's span with its outcome.
func endAppend(span trace.Span, seq uint64, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	} else {
		span.SetAttributes(attribute.Int64("capacity.seq", int64(seq)))
	}
	span.End()
}

// traceHeader is the W3C trace context of ctx's span as the headers a
// commit carries (capacity.Commit.Header); nil without a valid span.
func traceHeader(ctx context.Context) map[string]string {
	carrier := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, carrier)
	if len(carrier) == 0 {
		return nil
	}
	return carrier
}

// withTraceHeader returns ctx with the span context of a commit's header,
// for a store's Append, which takes the trace from its context.
func withTraceHeader(ctx context.Context, header map[string]string) context.Context {
	if len(header) == 0 {
		return ctx
	}
	return propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier(header))
}
