package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/capacityd/capacityd/capacity"
	"github.com/capacityd/capacityd/capacity/views"
	"github.com/capacityd/capacityd/streams"
	"github.com/capacityd/capacityd/streams/natstest"
	"github.com/nats-io/nats.go"
)

// TestTakeoverFencesAnIncompleteCommit: region a's stream ends with the
// first two messages of a three-message atomic commit (holds in pa2 and
// pa1, written with the store's commit headers as the committer writes
// them), b's mirror and read models take them in, a dies, b takes over:
// the promote answer names the commit, its messages and pools, the
// recovery point is before it; b's read models and write side no longer
// count its holds, b writes both pools, and verify finds b's read models
// equal to a fresh fold of the promoted copy.
func TestTakeoverFencesAnIncompleteCommit(t *testing.T) {
	a, b, stopA := startRegions(t)
	ctx := context.Background()
	start := time.Now().Add(48 * time.Hour).UTC().Truncate(time.Hour)
	def := `{"region":"north","kind":"delivery","starts_at":"` + start.Format(time.RFC3339) + `","ends_at":"` + start.Add(time.Hour).Format(time.RFC3339) + `","capacity":5}`
	for _, pool := range []string{"pa1", "pa2"} {
		if code, body := call(t, "PUT", a.HTTPURL+"/v1/pools/"+pool, def); code != http.StatusCreated {
			t.Fatalf("define %s in a: %d %v", pool, code, body)
		}
	}
	if code, body := call(t, "POST", a.HTTPURL+"/v1/pools/pa1/holds", `{"reservation_id":"r1","quantity":1,"ttl":"1h"}`); code != http.StatusCreated {
		t.Fatalf("hold in a: %d %v", code, body)
	}
	// Two of three messages of a commit, as the store would publish them.
	now := time.Now().UTC()
	var last uint64
	for i, part := range []struct {
		pool string
		qty  int
	}{{"pa2", 2}, {"pa1", 3}} {
		typ, data, err := capacity.EncodeCommit([]capacity.Event{capacity.Held{ReservationID: "ghost-" + part.pool, Quantity: part.qty, TTL: time.Hour, ExpiresAt: now.Add(time.Hour), At: now}})
		if err != nil {
			t.Fatal(err)
		}
		msg := nats.NewMsg("capacity.a." + part.pool)
		msg.Header.Set(nats.MsgIdHdr, "ghost-"+part.pool)
		msg.Header.Set(streams.HeaderEventType, typ)
		msg.Header.Set(streams.HeaderEventVersion, strconv.Itoa(capacity.SchemaVersion))
		msg.Header.Set(streams.HeaderCommit, "commit-ghost")
		msg.Header.Set(streams.HeaderCommitSeq, strconv.Itoa(i+1))
		msg.Header.Set(streams.HeaderCommitCount, "3")
		msg.Data = data
		ack, err := a.js.PublishMsg(ctx, msg)
		if err != nil {
			t.Fatal(err)
		}
		last = ack.Sequence
	}
	held := func(c *app, pool string) (int, error) {
		code, body := call(t, "GET", c.HTTPURL+"/v1/availability?min_position=a:"+itoa(last), "")
		if code != http.StatusOK {
			return 0, fmt.Errorf("availability: %d %v", code, body)
		}
		for _, p := range body["pools"].([]any) {
			if p := p.(map[string]any); p["id"] == pool {
				return int(p["held"].(float64)), nil
			}
		}
		return 0, fmt.Errorf("no pool %s in %v", pool, body)
	}
	natstest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if n, err := held(b, "pa2"); err != nil || n != 2 {
			return fmt.Errorf("b's read models: pa2 held %d, %v; want the partial commit's 2", n, err)
		}
		return nil
	})
	stopA()
	code, prom := call(t, "POST", b.HTTPURL+"/v1/admin/regions/a/promote", "")
	if code != http.StatusOK || prom["mode"] != "takeover" {
		t.Fatalf("promote a in b: %d %v", code, prom)
	}
	ic, _ := prom["incomplete_commit"].(map[string]any)
	if ic == nil || ic["commit"] != "commit-ghost" || ic["have"] != 2.0 || ic["want"] != 3.0 || ic["last_seq"] != float64(last) {
		t.Fatalf("incomplete_commit = %v, want commit-ghost, 2 of 3, ending at %d", ic, last)
	}
	if prom["last_seq"] != float64(last-2) {
		t.Errorf("last_seq = %v, want %d (before the fenced commit)", prom["last_seq"], last-2)
	}
	fenced, _ := ic["fenced"].([]any)
	if len(fenced) != 2 || fenced[0].(map[string]any)["pool"] != "pa2" || fenced[1].(map[string]any)["seq"] != float64(last) ||
		fmt.Sprint(ic["pools"]) != "[pa2 pa1]" {
		t.Fatalf("fenced messages %v, pools %v; want pa2 then pa1 at %d", fenced, ic["pools"], last)
	}
	// The read models dropped the commit at once, the write side never had it.
	for pool, want := range map[string]int{"pa1": 1, "pa2": 0} {
		if n, err := held(b, pool); err != nil || n != want {
			t.Errorf("b's read models after the fence: %s held %d, %v; want %d", pool, n, err, want)
		}
		code, body := call(t, "GET", b.HTTPURL+"/v1/pools/"+pool, "")
		if code != http.StatusOK || body["held"] != float64(want) {
			t.Errorf("GET %s in b: %d %v; want held %d", pool, code, body, want)
		}
		if code, body := call(t, "POST", b.HTTPURL+"/v1/pools/"+pool+"/holds", `{"reservation_id":"after","quantity":4,"ttl":"1h"}`); code != http.StatusCreated {
			t.Errorf("hold of 4 in %s in b after the takeover: %d %v", pool, code, body)
		}
	}
	// verify: b's read models equal a fresh fold of the promoted copy.
	var out bytes.Buffer
	err := verifyCommand(ctx, []string{"--nats-url", b.NATSURL, "--region", "a", "--domains", "b", "--publish=false"}, func(string) string { return "" }, &out, &out)
	if err != nil || !strings.Contains(out.String(), "domain b: read models equal a fresh fold: 2 pools of region a") {
		t.Errorf("verify after the fence: %v\n%s", err, out.String())
	}
}

// TestVerifyFindsADoctoredReadModel: verify against a running capacityd
// passes, then fails naming the pool once a commit the stream never had
// is applied to its read models.
func TestVerifyFindsADoctoredReadModel(t *testing.T) {
	a := startTest(t, "--region", "a")
	ctx := context.Background()
	start := time.Now().Add(48 * time.Hour).UTC().Truncate(time.Hour)
	def := `{"region":"north","kind":"delivery","starts_at":"` + start.Format(time.RFC3339) + `","ends_at":"` + start.Add(time.Hour).Format(time.RFC3339) + `","capacity":5}`
	if code, body := call(t, "PUT", a.HTTPURL+"/v1/pools/pd", def); code != http.StatusCreated {
		t.Fatalf("define: %d %v", code, body)
	}
	code, hold := call(t, "POST", a.HTTPURL+"/v1/pools/pd/holds", `{"reservation_id":"r1","quantity":2,"ttl":"1h"}`)
	if code != http.StatusCreated {
		t.Fatalf("hold: %d %v", code, hold)
	}
	// verify compares the read models as far as they have got: wait for the
	// hold, or a slow machine has them at the start still (0 pools).
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := a.readModels.waitFor(wctx, views.MinPositions{"": uint64(hold["pool_version"].(float64))}); err != nil {
		t.Fatal(err)
	}
	verify := func() (string, error) {
		var out bytes.Buffer
		err := verifyCommand(ctx, []string{"--nats-url", a.NATSURL, "--region", "a", "--publish=false"}, func(string) string { return "" }, &out, &out)
		return out.String(), err
	}
	if out, err := verify(); err != nil || !strings.Contains(out, "domain a: read models equal a fresh fold: 1 pools of region a") {
		t.Fatalf("verify of a sound region: %v\n%s", err, out)
	}
	seq := uint64(hold["pool_version"].(float64)) + 1000
	now := time.Now().UTC()
	a.readModels.models.Apply("pd", seq, capacity.Held{ReservationID: "doctored", Quantity: 1, TTL: time.Hour, ExpiresAt: now.Add(time.Hour), At: now})
	out, err := verify()
	if !errors.Is(err, errReadModels) || !strings.Contains(out, "domain a: read models DIFFER") || !strings.Contains(out, "pool pd at seq "+itoa(seq)+": held is 3 in the read model, 2 in a fresh fold") {
		t.Fatalf("verify of a doctored read model: %v, want errReadModels naming pd's held:\n%s", err, out)
	}
}
