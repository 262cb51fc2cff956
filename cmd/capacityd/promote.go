package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// regionCommand runs `capacityd region promote --url URL [--token T] REGION`:
// it asks the capacityd at URL to become the writer of REGION's pools and
// prints the answer (JSON: mode, epoch, last_seq, any incomplete commit).
func regionCommand(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "promote" {
		return errUsage{fmt.Errorf("usage: capacityd region promote --url URL [--token TOKEN] REGION")}
	}
	fs := flag.NewFlagSet("capacityd region promote", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", getenv("CAPACITY_URL"), "base URL of the capacityd of the region to promote ($CAPACITY_URL)")
	token := fs.String("token", getenv("CAPACITY_TOKEN"), "admin bearer token, if tokens are configured ($CAPACITY_TOKEN)")
	timeout := fs.Duration("timeout", time.Minute, "how long to wait for the answer (a handover waits for the mirror)")
	if err := fs.Parse(args[1:]); err != nil {
		return helpOr(errUsage{err})
	}
	if *url == "" || fs.NArg() != 1 {
		return errUsage{fmt.Errorf("usage: capacityd region promote --url URL [--token TOKEN] REGION")}
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	target := strings.TrimSuffix(*url, "/") + "/v1/admin/regions/" + fs.Arg(0) + "/promote"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, nil)
	if err != nil {
		return errUsage{err}
	}
	if *token != "" {
		req.Header.Set("Authorization", "Bearer "+*token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("promote: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("promote: reading the answer: %w", err)
	}
	fmt.Fprintln(stdout, strings.TrimSpace(string(body)))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("promote: %s", resp.Status)
	}
	return nil
}
