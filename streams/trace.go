package streams

import (
	"context"

	"go.opentelemetry.io/otel/propagation"
)

// HeaderTraceparent is the W3C Trace Context header a commit carries when
// the write that made it was traced.
const HeaderTraceparent = "traceparent"

// TraceHeader returns the W3C trace context of ctx's span as message
// headers (traceparent, tracestate), nil when ctx has no valid span
// context.
func TraceHeader(ctx context.Context) map[string]string {
	carrier := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, carrier)
	if len(carrier) == 0 {
		return nil
	}
	return carrier
}

// TraceContext returns ctx with the remote span context of a message's
// headers (its traceparent), for the span of whoever reads the message.
func TraceContext(ctx context.Context, header map[string]string) context.Context {
	if header[HeaderTraceparent] == "" {
		return ctx
	}
	return propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier(header))
}
