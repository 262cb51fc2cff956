package main

import (
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// startTracing installs the OpenTelemetry SDK with an OTLP/HTTP exporter
// when OTEL_EXPORTER_OTLP_ENDPOINT is set (the exporter reads it and the
// other OTEL_EXPORTER_OTLP_* variables itself); otherwise nothing is
// installed and nothing exported, while an incoming traceparent still
// travels into the event headers, the projection and the board feed. The
// provider is OpenTelemetry's global one, which is how instrumented
// packages find it. The returned function flushes and uninstalls it.
func (a *app) startTracing(ctx context.Context) error {
	if a.cfg.OTLPEndpoint == "" {
		return nil
	}
	exporter, err := otlptracehttp.New(ctx)
	if err != nil {
		return fmt.Errorf("OTLP exporter (OTEL_EXPORTER_OTLP_ENDPOINT=%s): %w", a.cfg.OTLPEndpoint, err)
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exporter),
		sdktrace.WithResource(resource.NewSchemaless(
			attribute.String("service.name", "capacityd"),
			attribute.String("capacity.region", a.cfg.Region),
		)),
	)
	otel.SetTracerProvider(tp)
	a.stopTracing = func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tp.Shutdown(ctx); err != nil {
			a.log.Warn().Err(err).Msg("flushing traces")
		}
		otel.SetTracerProvider(noop.NewTracerProvider())
	}
	a.log.Info().Str("endpoint", a.cfg.OTLPEndpoint).Msg("tracing: exporting spans over OTLP/HTTP")
	return nil
}
