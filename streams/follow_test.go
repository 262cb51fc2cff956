package streams_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/capacityd/capacityd/streams"
	"github.com/capacityd/capacityd/streams/natstest"
)

// appendN appends n single-event commits to pool through store and returns
// the last sequence.
func appendN(t *testing.T, store *streams.Store, pool, prefix string, n int) uint64 {
	t.Helper()
	ctx := context.Background()
	var last uint64
	for i := range n {
		seq, err := store.LastSeq(ctx, pool)
		if err != nil {
			t.Fatal(err)
		}
		if last, err = store.Append(ctx, pool, seq, events(fmt.Sprintf("%s%d", prefix, i), 1)); err != nil {
			t.Fatal(err)
		}
	}
	return last
}

// Failback's storage half: a takeover in b leaves a with a diverged tail;
// a sets its copy aside whole (sealed, same sequences), follows b's head
// with a fresh mirror, and that mirror is promoted back in a: a's stream
// is b's, sequence for sequence, and the tail stays in the aside stream.
func TestSetAsideThenFollowTheHead(t *testing.T) {
	sa, _, jsA, jsB := twoRegions(t)
	ctx := context.Background()
	storeA, err := streams.New(ctx, jsA, "a")
	if err != nil {
		t.Fatal(err)
	}
	mB, err := streams.EnsureMirror(ctx, jsB, "a")
	if err != nil {
		t.Fatal(err)
	}
	recovery := appendN(t, storeA, "p", "x", 10)
	if err := mB.WaitFor(ctx, recovery); err != nil {
		t.Fatal(err)
	}
	if _, err := mB.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	tail := appendN(t, storeA, "p", "tail", 3) // a, cut off, wrote on
	storeB, err := streams.New(ctx, jsB, "a")
	if err != nil {
		t.Fatal(err)
	}
	head := appendN(t, storeB, "p", "y", 5)

	aside, err := streams.SetAside(ctx, jsA, "a", streams.FencedName("a", 1))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := aside.LastSeq, tail; got != want {
		t.Fatalf("aside last_seq %d, want %d", got, want)
	}
	// Again (an interrupted set aside resumed): the copy is gone, the aside stays.
	if _, err := streams.SetAside(ctx, jsA, "a", streams.FencedName("a", 1)); err == nil {
		t.Fatal("SetAside with no copy left succeeded")
	}
	names, err := streams.Asides(ctx, jsA, "a")
	if err != nil || len(names) != 1 || names[0] != "CAPACITY_A_FENCED_1" {
		t.Fatalf("Asides = %v, %v", names, err)
	}
	s, _ := jsA.Stream(ctx, names[0])
	if info, _ := s.Info(ctx); !info.Config.Sealed || info.Config.Mirror != nil || info.State.LastSeq != tail {
		t.Fatalf("aside stream: sealed %v, mirror %v, last %d; want sealed, no mirror, %d", info.Config.Sealed, info.Config.Mirror, info.State.LastSeq, tail)
	}
	if _, err := jsA.Publish(ctx, names[0], []byte("x")); err == nil {
		t.Fatal("a publish to the sealed aside stream was stored")
	}

	mA, err := streams.EnsureMirrorFrom(ctx, jsA, "a", "b")
	if err != nil {
		t.Fatal(err)
	}
	natstest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		st, err := mA.Status(ctx)
		if err != nil {
			return err
		}
		if st.LastSeq != head || st.Origin != "b" {
			return fmt.Errorf("a's new copy %+v, want last %d from b", st, head)
		}
		return nil
	})
	if _, err := streams.New(ctx, jsA, "a"); !errors.Is(err, streams.ErrInvalid) {
		t.Fatalf("New over the mirror = %v, want ErrInvalid", err)
	}
	follower, err := streams.New(ctx, jsA, "a", streams.Following())
	if err != nil || !follower.Following() {
		t.Fatalf("New(Following) = %v, following %v", err, follower != nil && follower.Following())
	}
	if last, err := follower.StreamLastSeq(ctx); err != nil || last != head {
		t.Fatalf("follower last %d, %v; want %d", last, err, head)
	}
	// Failback: the mirror becomes the head again in a.
	if _, err := mA.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	storeA, err = streams.New(ctx, jsA, "a")
	if err != nil {
		t.Fatal(err)
	}
	last := appendN(t, storeA, "p", "z", 2)
	if last != head+2 {
		t.Fatalf("first writes after failback at %d, want %d", last, head+2)
	}
	// b's promoted copy is a prefix of a's head: nothing of the chain lost.
	nc, _ := natstest.Connect(t, sa)
	headCopy, err := streams.ReadCopy(ctx, nc, "a", "a")
	if err != nil {
		t.Fatal(err)
	}
	bCopy, err := streams.ReadCopy(ctx, nc, "b", "a")
	if err != nil {
		t.Fatal(err)
	}
	if d := streams.Compare(headCopy, bCopy); !d.Prefix() || d.Lag != 2 {
		t.Fatalf("b's copy against a's head after failback: %+v, want a prefix 2 behind", d)
	}
}
