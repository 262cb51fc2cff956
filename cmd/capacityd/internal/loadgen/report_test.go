package loadgen

import (
	"strings"
	"testing"
	"time"
)

// TestWriteTablePeers checks that the table gains a "vs postgres" column
// and the peer's rows only when a peer ran.
func TestWriteTablePeers(t *testing.T) {
	scenario := ScenarioReport{Figure: Figure{Name: HotPool, Sync: "always", OpsPerSec: 3000}, Ratios: map[string]float64{CeilingHTTP: 0.5}}
	without := &Report{Scenarios: []ScenarioReport{scenario}}
	var b strings.Builder
	if err := WriteTable(&b, without); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "postgres") {
		t.Errorf("without a peer the table mentions postgres:\n%s", b.String())
	}

	scenario.Ratios = map[string]float64{CeilingHTTP: 0.5, PeerPostgres: 12}
	with := &Report{
		Scenarios: []ScenarioReport{scenario},
		Peers: []PeerReport{{Figure: Figure{Name: PeerPostgres, Sync: "always", OpsPerSec: 250}, Peer: PeerPostgres, Scenario: HotPool,
			Pools: 1, Durable: true, Correctness: &Correctness{Passed: true, Pools: 1, Held: 2500, ExpectedHeld: 2500}}},
	}
	b.Reset()
	if err := WriteTable(&b, with); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"vs postgres", "12.00x", "postgres (hot-pool)", "250", "peer postgres (hot-pool):", "held 2500 (want 2500)"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

// TestCoresShowSteal: the cores column names the hypervisor's steal when
// there is any to speak of, so a slow run on a busy host reads as such.
func TestCoresShowSteal(t *testing.T) {
	f := FigureOf(Result{Elapsed: time.Second, CPU: 1, OtherCPU: 0.9, StealCPU: 0.8, CPUKnown: true}, "always")
	if got, want := cores(f), "1.0/0.9 (0.8 steal)"; got != want {
		t.Fatalf("cores = %q, want %q", got, want)
	}
	if f := FigureOf(Result{Elapsed: time.Second, CPU: 1, OtherCPU: 0.2, StealCPU: 0.01, CPUKnown: true}, "always"); cores(f) != "1.0/0.2" {
		t.Fatalf("cores without steal to speak of = %q", cores(f))
	}
}
