package streams_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/capacityd/capacityd/streams"
	"github.com/capacityd/capacityd/streams/natstest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestPromoteFencesAnIncompleteCommit: a copy promoted while it holds the
// first two of three messages of an atomic commit (built here as the store
// writes them: the commit id, the message's place and the count in the
// store's own headers, on two pools' subjects) answers the commit as
// incomplete, deletes its messages from the promoted stream, reports them
// and takes the sequence before them as the recovery point; each pool's
// last sequence is that of its last complete commit, and a write with it
// as the expected sequence succeeds.
func TestPromoteFencesAnIncompleteCommit(t *testing.T) {
	_, _, jsA, jsB := twoRegions(t)
	ctx := context.Background()
	storeA, err := streams.New(ctx, jsA, "a")
	if err != nil {
		t.Fatal(err)
	}
	m, err := streams.EnsureMirror(ctx, jsB, "a")
	if err != nil {
		t.Fatal(err)
	}
	before := map[string]uint64{}
	for i, pool := range []string{"p1", "p2", "p1"} {
		seq, err := storeA.LastSeq(ctx, pool)
		if err != nil {
			t.Fatal(err)
		}
		if before[pool], err = storeA.Append(ctx, pool, seq, events(fmt.Sprintf("c%d", i), 1)); err != nil {
			t.Fatal(err)
		}
	}
	complete := max(before["p1"], before["p2"])
	// The first two messages of a three-message commit over p2, p1 and p3.
	for i, pool := range []string{"p2", "p1"} {
		msg := nats.NewMsg("capacity.a." + pool)
		msg.Header.Set(nats.MsgIdHdr, "partial-"+pool)
		msg.Header.Set(streams.HeaderEventType, "pool.held")
		msg.Header.Set(streams.HeaderEventVersion, "1")
		msg.Header.Set(streams.HeaderCommit, "commit-x")
		msg.Header.Set(streams.HeaderCommitSeq, strconv.Itoa(i+1))
		msg.Header.Set(streams.HeaderCommitCount, "3")
		msg.Data = []byte(`{"n":0}`)
		if _, err := jsA.PublishMsg(ctx, msg); err != nil {
			t.Fatal(err)
		}
	}
	natstest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		st, err := m.Status(ctx)
		if err != nil || st.LastSeq != complete+2 {
			return fmt.Errorf("mirror at %+v, %v; want last seq %d", st, err, complete+2)
		}
		return nil
	})
	p, err := m.Promote(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ic := p.Incomplete
	if ic == nil || ic.Commit != "commit-x" || ic.Have != 2 || ic.Want != 3 || ic.FirstSeq != complete+1 || ic.LastSeq != complete+2 {
		t.Fatalf("incomplete commit = %+v, want commit-x, 2 of 3 at %d..%d", ic, complete+1, complete+2)
	}
	if p.LastSeq != complete {
		t.Errorf("recovery point = %d, want %d (the last complete commit)", p.LastSeq, complete)
	}
	want := []streams.FencedMessage{{Seq: complete + 1, Pool: "p2", ID: "partial-p2", Type: "pool.held"}, {Seq: complete + 2, Pool: "p1", ID: "partial-p1", Type: "pool.held"}}
	if len(ic.Fenced) != len(want) || ic.Fenced[0] != want[0] || ic.Fenced[1] != want[1] {
		t.Errorf("fenced = %+v, want %+v", ic.Fenced, want)
	}
	if got := ic.Pools(); len(got) != 2 || got[0] != "p2" || got[1] != "p1" {
		t.Errorf("pools = %v, want [p2 p1]", got)
	}
	// The promoted stream holds none of the commit.
	stream, err := jsB.Stream(ctx, streams.StreamName("a"))
	if err != nil {
		t.Fatal(err)
	}
	for seq := ic.FirstSeq; seq <= ic.LastSeq; seq++ {
		if _, err := stream.GetMsg(ctx, seq); !errors.Is(err, jetstream.ErrMsgNotFound) {
			t.Errorf("message %d after the fence: %v, want not found", seq, err)
		}
	}
	// A store over it: each pool at its last complete commit, writable there.
	storeB, err := streams.New(ctx, jsB, "a")
	if err != nil {
		t.Fatal(err)
	}
	for _, pool := range []string{"p1", "p2"} {
		last, err := storeB.LastSeq(ctx, pool)
		if err != nil || last != before[pool] {
			t.Fatalf("%s's last sequence in the promoted copy = %d, %v; want %d", pool, last, err, before[pool])
		}
		if _, err := storeB.Append(ctx, pool, last, events("after-"+pool, 1)); err != nil {
			t.Fatalf("append to %s at its last complete commit: %v", pool, err)
		}
	}
	// Promoting again changes nothing and finds nothing incomplete.
	again, err := m.Promote(ctx)
	if err != nil || !again.Already || again.Incomplete != nil {
		t.Fatalf("promote again = %+v, %v; want already, nothing incomplete", again, err)
	}
}
