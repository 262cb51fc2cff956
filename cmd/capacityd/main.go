// Command capacityd is the capacity reservation service: the booking and
// planner HTTP API over pools kept in NATS JetStream, with an embedded
// nats-server by default.
//
// It only wires: NATS and the stores (streams, kv), the write side
// (capacity/pools, with its sweeper and metrics), the read models
// (capacity/views fed by streams/projection) and the HTTP server (web, with
// the planner UI of web/ui). Rules live in capacity, bytes meet JetStream in
// streams and kv, and HTTP meets the domain in web; nothing imports cmd.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// exitCode prints err and maps it to the process's exit status: 0 for
// success, 2 for a usage error, 1 for anything else.
func exitCode(err error, stderr io.Writer) int {
	var usage errUsage
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errHelp):
		return 0
	case errors.As(err, &usage):
		fmt.Fprintf(stderr, "capacityd: %v\nRun 'capacityd -h' for usage.\n", err)
		return 2
	}
	fmt.Fprintf(stderr, "capacityd: %v\n", err)
	return 1
}

var errHelp = errors.New("help requested")

// run is the whole program: main only adds the process around it, so tests
// start capacityd in-process with their own arguments, environment and
// output, and stop it by cancelling ctx.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		cfg, err := parseConfig("capacityd serve", args, getenv, stderr)
		if err != nil {
			return helpOr(err)
		}
		return serve(ctx, cfg, stdout, stderr)
	case "bench":
		opts, err := parseBenchOptions(args, getenv, stderr)
		if err != nil {
			return helpOr(err)
		}
		return bench(ctx, opts, stdout, stderr)
	case "verify":
		return verifyCommand(ctx, args, getenv, stdout, stderr)
	case "region":
		return regionCommand(ctx, args, getenv, stdout, stderr)
	case "help":
		fmt.Fprintln(stdout, usageText)
		return nil
	}
	return errUsage{fmt.Errorf("unknown command %q", cmd)}
}

// helpOr turns -h into a clean exit.
func helpOr(err error) error {
	if errors.Is(err, flagErrHelp) {
		return errHelp
	}
	return err
}

const usageText = `capacityd: a NATS JetStream-native capacity reservation service.

Usage:
  capacityd [serve] [flags]   run the service (default): HTTP API, planner UI,
                              NATS micro service "capacity", embedded NATS
  capacityd bench [flags]     measure it under load (HTTP and NATS), against
                              HTTP and storage ceilings
  capacityd region promote --url URL REGION
                              make the capacityd at URL the writer of
                              REGION's pools (handover or takeover)
  capacityd verify --nats-url URL --region REGION [--domains a,b] [--watch 5s]
                              compare every copy of REGION's stream with the
                              head, and each region's read models with a
                              fresh fold; exit 0 iff each copy is a prefix
                              of it and each read model equals the fold
  capacityd help              this text

Run 'capacityd serve -h' or 'capacityd bench -h' for the flags.`
