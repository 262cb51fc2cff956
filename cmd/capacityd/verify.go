package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/capacityd/capacityd/kv"
	"github.com/capacityd/capacityd/streams"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// errDiffers is verify's failure: some copy is not a prefix of the head.
var errDiffers = errors.New("verify: a copy is not a prefix of the head")

// verifyCommand runs `capacityd verify --nats-url URL --region a
// [--domains a,b] [--watch 5s]`: every copy of region a's stream it can
// reach (one per JetStream domain) is compared message by message with the
// head (the copy in the domain of the writer of the highest term): missing,
// out of order, content mismatch, diverged tail, lag. Exit 0 when every
// copy is a prefix of the head.
func verifyCommand(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("capacityd verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("nats-url", getenv("CAPACITY_NATS_URL"), "NATS server to connect to ($CAPACITY_NATS_URL)")
	region := fs.String("region", "", "the region whose stream to verify")
	var domains []string
	fs.Func("domains", "comma-separated JetStream domains holding copies (default: the region and every domain named in its terms)", func(v string) error {
		domains = splitList(v)
		return nil
	})
	watch := fs.Duration("watch", 0, "verify again at this interval until interrupted (0: once)")
	if err := fs.Parse(args); err != nil {
		return helpOr(errUsage{err})
	}
	if *url == "" || *region == "" || fs.NArg() > 0 {
		return errUsage{fmt.Errorf("usage: capacityd verify --nats-url URL --region REGION [--domains a,b] [--watch 5s]")}
	}
	nc, err := nats.Connect(*url, nats.Name("capacityd-verify"))
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	defer nc.Close()
	for {
		err := verifyOnce(ctx, nc, *region, domains, stdout)
		if *watch <= 0 {
			return err
		}
		if err != nil && !errors.Is(err, errDiffers) {
			fmt.Fprintln(stdout, "verify:", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(*watch):
		}
	}
}

func verifyOnce(ctx context.Context, nc *nats.Conn, region string, domains []string, out io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if len(domains) == 0 {
		domains = []string{region}
	}
	// The head: the writer of the highest term any domain holds.
	head := kv.Term{Region: region, Writer: region}
	for _, d := range domains {
		if t, err := kv.PeerTerm(ctx, nc, d, region); err == nil && t.Epoch > head.Epoch {
			head = t
		}
	}
	if !contains(domains, head.Writer) {
		domains = append(domains, head.Writer)
	}
	headCopy, err := streams.ReadCopy(ctx, nc, head.Writer, region)
	if err != nil {
		return fmt.Errorf("verify: head of region %s in domain %s: %w", region, head.Writer, err)
	}
	fmt.Fprintf(out, "region %s: head in domain %s (epoch %d), last_seq %d, %d messages\n", region, head.Writer, head.Epoch, headCopy.LastSeq, len(headCopy.Order()))
	bad := false
	for _, d := range domains {
		if d == head.Writer {
			continue
		}
		c, err := streams.ReadCopy(ctx, nc, d, region)
		if err != nil {
			fmt.Fprintf(out, "  domain %s: unreachable or no copy: %v\n", d, err)
			continue
		}
		diff := streams.Compare(headCopy, c)
		verdict := "prefix of the head"
		if !diff.Prefix() {
			verdict, bad = "DIFFERS", true
		}
		fmt.Fprintf(out, "  domain %s: %s; last_seq %d, lag %d, missing %d, out of order %d, content mismatch %d, diverged tail %d%s\n",
			d, verdict, c.LastSeq, diff.Lag, len(diff.Missing), diff.OutOfOrder, len(diff.Mismatch), len(diff.Beyond), seqRange(diff.Beyond))
	}
	// Copies set aside by failback are history, not copies: reported, never
	// a reason to fail (their diverged tail is what the fenced region wrote
	// after the recovery point).
	for _, d := range domains {
		js, err := jetstream.NewWithDomain(nc, d)
		if err != nil {
			continue
		}
		names, err := streams.Asides(ctx, js, region)
		if err != nil {
			continue
		}
		for _, name := range names {
			c, err := streams.ReadStream(ctx, nc, d, name)
			if err != nil {
				fmt.Fprintf(out, "  domain %s: set aside %s: %v\n", d, name, err)
				continue
			}
			diff := streams.Compare(headCopy, c)
			fmt.Fprintf(out, "  domain %s: set aside %s (kept, not a copy): last_seq %d, content mismatch %d, diverged tail %d%s\n",
				d, name, c.LastSeq, len(diff.Mismatch), len(diff.Beyond), seqRange(diff.Beyond))
		}
	}
	if bad {
		return errDiffers
	}
	return nil
}

func seqRange(seqs []uint64) string {
	if len(seqs) == 0 {
		return ""
	}
	return fmt.Sprintf(" (sequences %d..%d)", seqs[0], seqs[len(seqs)-1])
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
