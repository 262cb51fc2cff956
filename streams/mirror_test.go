package streams_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/capacityd/capacityd/streams"
	"github.com/capacityd/capacityd/streams/natstest"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
)

// twoRegions runs region a (leaf-node hub) and region b (leaf to a, with the
// region link's deny list) and returns JetStream contexts in each domain.
func twoRegions(t *testing.T) (sa, sb *server.Server, jsA, jsB jetstream.JetStream) {
	t.Helper()
	sa = natstest.RunServer(t, natstest.Region("a"))
	sb = natstest.RunServer(t, natstest.Region("b"), natstest.LeafTo(sa, streams.LinkDeny()...))
	natstest.WaitLeaf(t, sa, 1)
	natstest.WaitLeaf(t, sb, 1)
	_, jsA = natstest.Connect(t, sa)
	_, jsB = natstest.Connect(t, sb)
	return sa, sb, jsA, jsB
}

func TestMirrorFollowsOriginAcrossDomains(t *testing.T) {
	_, _, jsA, jsB := twoRegions(t)
	ctx := context.Background()
	storeA, err := streams.New(ctx, jsA, "a")
	if err != nil {
		t.Fatal(err)
	}
	// The mirror is created before the origin has anything, and survives being ensured again.
	m, err := streams.EnsureMirror(ctx, jsB, "a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := streams.EnsureMirror(ctx, jsB, "a"); err != nil {
		t.Fatalf("EnsureMirror again: %v", err)
	}
	var last uint64
	for i := range 20 {
		pool := fmt.Sprintf("p%d", i%3)
		seq, err := storeA.LastSeq(ctx, pool)
		if err != nil {
			t.Fatal(err)
		}
		if last, err = storeA.Append(ctx, pool, seq, events(fmt.Sprintf("m%d", i), 2)); err != nil {
			t.Fatal(err)
		}
	}
	natstest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		st, err := m.Status(ctx)
		if err != nil {
			return err
		}
		if st.LastSeq != last || st.Lag != 0 || st.Promoted {
			return fmt.Errorf("mirror status %+v, want last seq %d, lag 0", st, last)
		}
		return nil
	})
	// Same sequences, subjects and bodies in the copy.
	src, _ := jsA.Stream(ctx, streams.StreamName("a"))
	dst, _ := jsB.Stream(ctx, streams.StreamName("a"))
	for seq := uint64(1); seq <= last; seq++ {
		x, err := src.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		y, err := dst.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		if x.Subject != y.Subject || string(x.Data) != string(y.Data) {
			t.Fatalf("seq %d: origin %s %q, mirror %s %q", seq, x.Subject, x.Data, y.Subject, y.Data)
		}
	}
	// The mirror in b owns no subjects: a Store for region a in b is refused.
	if _, err := streams.New(ctx, jsB, "a"); !errors.Is(err, streams.ErrInvalid) {
		t.Fatalf("streams.New on the mirror = %v, want ErrInvalid", err)
	}
	// A stream of that name that is something else is refused.
	if _, err := jsB.CreateStream(ctx, jetstream.StreamConfig{Name: streams.StreamName("c"), Subjects: []string{"other.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := streams.EnsureMirror(ctx, jsB, "c"); !errors.Is(err, streams.ErrInvalid) {
		t.Fatalf("EnsureMirror over a foreign stream = %v, want ErrInvalid", err)
	}
}

// The link deny list keeps a publish in one domain out of the other
// domain's stream on the same subjects (the promotion hazard of NATS-NOTES).
func TestLinkDenyKeepsEventSubjectsInTheirDomain(t *testing.T) {
	_, _, jsA, jsB := twoRegions(t)
	ctx := context.Background()
	if _, err := streams.New(ctx, jsA, "a"); err != nil {
		t.Fatal(err)
	}
	// A second stream on a's subjects in b, as a promoted copy would be.
	if _, err := jsB.CreateStream(ctx, jetstream.StreamConfig{Name: streams.StreamName("a"), Subjects: []string{"capacity.a.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := jsB.Publish(ctx, "capacity.a.p1", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := jsA.Publish(ctx, "capacity.a.p2", []byte("y")); err != nil {
		t.Fatal(err)
	}
	for name, js := range map[string]jetstream.JetStream{"a": jsA, "b": jsB} {
		s, err := js.Stream(ctx, streams.StreamName("a"))
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got := info.State.Msgs; got != 1 {
			t.Errorf("region %s stream holds %d messages, want 1 (its own publish only)", name, got)
		}
	}
}
