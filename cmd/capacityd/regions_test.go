package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/capacityd/capacityd/streams/natstest"
)

// leafAddr returns the address of a's embedded leaf-node listener.
func leafAddr(t *testing.T, a *app) string {
	t.Helper()
	v, err := a.ns.Varz(nil)
	if err != nil || v.LeafNode.Port == 0 {
		t.Fatalf("no leaf-node listener: %v", err)
	}
	return net.JoinHostPort(v.LeafNode.Host, strconv.Itoa(v.LeafNode.Port))
}

// startRegions runs region a (leaf-node listener) and region b (leaf to a),
// each mirroring the other.
func startRegions(t *testing.T) (a, b *app, stopA func()) {
	t.Helper()
	a, stopA = startTestIn(t, t.TempDir(), "--region", "a", "--peer-regions", "b", "--leafnode-listen", "127.0.0.1:0")
	b = startTest(t, "--region", "b", "--peer-regions", "a", "--leafnode-remote", "nats-leaf://"+leafAddr(t, a))
	natstest.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if a.ns.NumLeafNodes() < 1 || b.ns.NumLeafNodes() < 1 {
			return fmt.Errorf("regions not linked yet")
		}
		return nil
	})
	return a, b, stopA
}

func TestRegionsReadEveryRegionsPools(t *testing.T) {
	a, b, stopA := startRegions(t)
	start := time.Now().Add(48 * time.Hour).UTC().Truncate(time.Hour)
	def := func(region string) string {
		return `{"region":"` + region + `","kind":"delivery","starts_at":"` + start.Format(time.RFC3339) + `","ends_at":"` + start.Add(time.Hour).Format(time.RFC3339) + `","capacity":4}`
	}
	if code, body := call(t, "PUT", a.HTTPURL+"/v1/pools/pa", def("north")); code != http.StatusCreated || body["home_region"] != "a" {
		t.Fatalf("define in a: %d %v", code, body)
	}
	if code, body := call(t, "PUT", b.HTTPURL+"/v1/pools/pb", def("south")); code != http.StatusCreated {
		t.Fatalf("define in b: %d %v", code, body)
	}
	code, hold := call(t, "POST", a.HTTPURL+"/v1/pools/pa/holds", `{"reservation_id":"r1","quantity":3,"ttl":"1h"}`)
	if code != http.StatusCreated {
		t.Fatalf("hold: %d %v", code, hold)
	}
	version := itoa(uint64(hold["pool_version"].(float64)))

	// b reads a's pool from its mirror once asked to wait for a's position.
	code, avail := call(t, "GET", b.HTTPURL+"/v1/availability?min_position=a:"+version, "")
	if code != http.StatusOK {
		t.Fatalf("availability in b: %d %v", code, avail)
	}
	byID := map[string]map[string]any{}
	for _, p := range avail["pools"].([]any) {
		byID[p.(map[string]any)["id"].(string)] = p.(map[string]any)
	}
	if p := byID["pa"]; p == nil || p["home_region"] != "a" || p["held"] != 3.0 {
		t.Fatalf("a's pool in b's availability = %v", avail)
	}
	if p := byID["pb"]; p == nil || p["home_region"] != "b" {
		t.Fatalf("b's pool in b's availability = %v", avail)
	}
	positions := avail["positions"].(map[string]any)
	if positions["a"].(float64) < float64(hold["pool_version"].(float64)) || positions["b"] != avail["position"] {
		t.Fatalf("positions = %v, position %v", positions, avail["position"])
	}
	code, found := call(t, "GET", b.HTTPURL+"/v1/reservations/r1?min_position=a:"+version, "")
	if code != http.StatusOK || found["reservations"].([]any)[0].(map[string]any)["pool"] != "pa" {
		t.Fatalf("lookup in b: %d %v", code, found)
	}
	// A region b does not read is a bad request, not a wait.
	if code, body := call(t, "GET", b.HTTPURL+"/v1/availability?min_position=zz:1", ""); code != http.StatusBadRequest {
		t.Fatalf("min_position of an unknown region: %d %v", code, body)
	}

	// GET /v1/regions in b: itself and a, a reachable, the mirror caught up.
	natstest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		code, regs := call(t, "GET", b.HTTPURL+"/v1/regions", "")
		if code != http.StatusOK || regs["region"] != "b" {
			return fmt.Errorf("regions: %d %v", code, regs)
		}
		list := regs["regions"].([]any)
		if len(list) != 2 {
			return fmt.Errorf("regions = %v", regs)
		}
		ra := list[1].(map[string]any)
		if ra["name"] != "a" || ra["writer"] != "a" || ra["reachable"] != true || ra["mirror_lag"] != 0.0 || ra["last_seq"].(float64) < 2 {
			return fmt.Errorf("region a as b sees it = %v", ra)
		}
		return nil
	})
	// Lag per source on /metrics.
	res, err := http.Get(b.HTTPURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(res.Body)
	res.Body.Close()
	for _, want := range []string{`capacity_region_mirror_lag{region="a"}`, `capacity_region_readmodel_position{region="b"}`,
		"go_sched_latencies_seconds_bucket", "go_gc_pauses_seconds_bucket"} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	// With a gone, b still answers reads and reports a unreachable quickly.
	stopA()
	begin := time.Now()
	natstest.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		_, regs := call(t, "GET", b.HTTPURL+"/v1/regions", "")
		if ra := regs["regions"].([]any)[1].(map[string]any); ra["reachable"] != false {
			return fmt.Errorf("a still reachable: %v", ra)
		}
		return nil
	})
	if d := time.Since(begin); d > 3*time.Second {
		t.Errorf("a reported unreachable after %v", d)
	}
	if code, _ := call(t, "GET", b.HTTPURL+"/v1/availability?region=north", ""); code != http.StatusOK {
		t.Fatalf("availability in b with a down: %d", code)
	}
}
