package capacity_test

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/capacityd/capacityd/capacity"
)

// t0 is when every test pool is defined.
var t0 = time.Date(2030, 5, 1, 8, 0, 0, 0, time.UTC)

// slot is the definition of the test pool: 10 units, window t0+10h..t0+11h.
func slot() capacity.DefinePool {
	return capacity.DefinePool{
		Pool: "ams-2030-05-01-1800", Region: "ams", Kind: "delivery",
		StartsAt: t0.Add(10 * time.Hour), EndsAt: t0.Add(11 * time.Hour), Capacity: 10,
	}
}

// step is a command carried out at t0+after while setting a case up.
type step struct {
	after time.Duration
	cmd   capacity.Command
}

func at(after time.Duration, cmd capacity.Command) step { return step{after, cmd} }

// now is a step at t0.
func now(cmd capacity.Command) step { return step{0, cmd} }

func hold(id string, quantity int, ttl time.Duration) capacity.Hold {
	return capacity.Hold{ReservationID: id, Quantity: quantity, TTL: ttl}
}

func ptr[T any](v T) *T { return &v }

// mustApply evolves p with events at the sequences after p's version.
func mustApply(t testing.TB, p *capacity.Pool, events ...capacity.Event) {
	t.Helper()
	for _, e := range events {
		p.Evolve(e, p.Version+1)
	}
}

// mustDo decides cmd on p at when, fails the test on a refusal, and applies
// the events.
func mustDo(t testing.TB, p *capacity.Pool, cmd capacity.Command, when time.Time) []capacity.Event {
	t.Helper()
	events, err := capacity.Decide(p, cmd, when)
	if err != nil {
		t.Fatalf("Decide(%#v) at %s: %v", cmd, when, err)
	}
	mustApply(t, p, events...)
	return events
}

// given returns a pool with steps carried out.
func given(t testing.TB, steps ...step) *capacity.Pool {
	t.Helper()
	p := &capacity.Pool{}
	for _, s := range steps {
		mustDo(t, p, s.cmd, t0.Add(s.after))
	}
	return p
}

// mustRefuse decides cmd and fails unless it is refused with code.
func mustRefuse(t testing.TB, p *capacity.Pool, cmd capacity.Command, when time.Time, code string) {
	t.Helper()
	events, err := capacity.Decide(p, cmd, when)
	if got, want := capacity.ErrorCode(err), code; got != want {
		t.Fatalf("Decide(%#v) at %s: code %q (%v), want %q", cmd, when, got, err, want)
	}
	if events != nil {
		t.Fatalf("Decide(%#v) refused with events %v", cmd, events)
	}
}

func requireEqual[T any](t testing.TB, what string, got, want T) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s = %+v, want %+v", what, got, want)
	}
}

func longID(n int) string { return strings.Repeat("x", n) }
