package pools_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/capacityd/capacityd/capacity"
	"github.com/capacityd/capacityd/capacity/pools"
	"github.com/capacityd/capacityd/streams/natstest"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// A group commit's append runs in a span that is a child of its first
// writing caller's and links every other writing caller's, and the store
// gets that span in the append's context (streams writes it as the
// message's traceparent).
func TestGroupCommitSpanLinksItsCallers(t *testing.T) {
	recorder := tracetest.NewSpanRecorder()
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder)))
	defer otel.SetTracerProvider(noop.NewTracerProvider())

	store := newMemStore()
	svc := pools.New(store, noSnapshots{}, pools.Options{Now: func() time.Time { return epoch }})
	defer svc.Close()
	define(t, svc, "p1", 100, epoch)

	// Hold the first hold's append until the others have queued behind it,
	// so they go out together in the next one.
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	var mu sync.Mutex
	var appendTraces []trace.SpanContext
	store.setHook(func(ctx context.Context, _ string, _ uint64, _ []capacity.Event) error {
		mu.Lock()
		appendTraces = append(appendTraces, trace.SpanContextFromContext(ctx))
		mu.Unlock()
		once.Do(func() { close(entered); <-release })
		return nil
	})
	callers := make([]trace.SpanContext, 6)
	for i := range callers {
		callers[i] = trace.NewSpanContext(trace.SpanContextConfig{
			TraceID: trace.TraceID{byte(i + 1), 1}, SpanID: trace.SpanID{byte(i + 1), 2}, TraceFlags: trace.FlagsSampled, Remote: true})
	}
	hold := func(i int) error {
		ctx := trace.ContextWithRemoteSpanContext(context.Background(), callers[i])
		_, err := svc.Execute(ctx, "p1", capacity.Hold{ReservationID: fmt.Sprintf("r%d", i), Quantity: 1, TTL: time.Minute})
		return err
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(callers))
	wg.Go(func() { errs <- hold(0) })
	<-entered
	for i := 1; i < len(callers); i++ {
		wg.Go(func() { errs <- hold(i) })
	}
	natstest.CheckFor(t, 10*time.Second, time.Millisecond, func() error {
		if n := svc.Pending("p1"); n < len(callers)-1 {
			return fmt.Errorf("%d holds queued behind the first, want %d", n, len(callers)-1)
		}
		return nil
	})
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}

	var batch sdktrace.ReadOnlySpan
	for _, s := range recorder.Ended() {
		if s.Name() == "capacity.append" && len(s.Links()) > 0 {
			batch = s
		}
	}
	if batch == nil {
		t.Fatalf("no append span with links among %d spans", len(recorder.Ended()))
	}
	seen := map[trace.TraceID]bool{batch.Parent().TraceID(): true}
	for _, l := range batch.Links() {
		seen[l.SpanContext.TraceID()] = true
	}
	for i := 1; i < len(callers); i++ {
		if !seen[callers[i].TraceID()] {
			t.Errorf("caller %d's trace is neither the batch's parent nor linked", i)
		}
	}
	if got, want := len(batch.Links()), 4; got != want {
		t.Errorf("links = %d, want %d (five callers: one parent, four links)", got, want)
	}
	mu.Lock()
	defer mu.Unlock()
	last := appendTraces[len(appendTraces)-1]
	if last.SpanID() != batch.SpanContext().SpanID() || last.TraceID() != batch.Parent().TraceID() {
		t.Errorf("the store's append context = %v, want the batch span %v", last, batch.SpanContext())
	}
}
