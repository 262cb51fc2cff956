package streams

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/capacityd/capacityd/capacity"
	"github.com/nats-io/nats.go"
)

// Decode reads one message of an event stream as stored at stream sequence
// seq at time stored: the pool from its subject (capacity.<region>.<pool>),
// the event type, schema version and id from its headers, and its body. It
// is the one decoder of the log's messages: the Store's reads use it, and so
// does a projection consuming the stream (streams/projection). Recorded.Events
// then decodes the body into domain events.
//
// On error the Recorded holds Seq and, when the subject is one of ours,
// Pool, so a consumer can report and skip the message.
func Decode(subject string, seq uint64, stored time.Time, hdr nats.Header, data []byte) (Recorded, error) {
	rec := Recorded{Seq: seq}
	pool, ok := poolOfSubject(subject)
	if !ok {
		return rec, fmt.Errorf("streams: message %d: subject %q is not %s.<region>.<pool>", seq, subject, subjectRoot)
	}
	rec.Pool, rec.Time, rec.Data = pool, stored, data
	for k, v := range hdr {
		if len(v) == 0 {
			continue
		}
		switch {
		case k == nats.MsgIdHdr:
			rec.ID = v[0]
		case k == HeaderEventType:
			rec.Type = v[0]
		case k == HeaderEventVersion:
			n, err := strconv.Atoi(v[0])
			if err != nil {
				return Recorded{Seq: seq, Pool: pool}, fmt.Errorf("streams: message %d: bad %s %q", seq, HeaderEventVersion, v[0])
			}
			rec.Version = n
		case strings.HasPrefix(k, "Nats-"), strings.HasPrefix(k, "Capacity-Commit"):
			// Set by the store or the server (batch id and sequence, expected sequence...).
		default:
			if rec.Header == nil {
				rec.Header = make(map[string]string, len(hdr))
			}
			rec.Header[k] = v[0]
		}
	}
	return rec, nil
}

// Events decodes the message's body into the domain events of its commit
// (capacity.DecodeCommit): one event, or the several events of a group
// commit, which share the message's sequence. A body that does not decode is
// a capacity.EINVALID error.
func (r Recorded) Events() ([]capacity.Event, error) {
	return capacity.DecodeCommit(r.Type, r.Version, r.Data)
}

// poolOfSubject returns the pool of a subject capacity.<region>.<pool>.
func poolOfSubject(subject string) (string, bool) {
	rest, ok := strings.CutPrefix(subject, subjectRoot+".")
	if !ok {
		return "", false
	}
	region, pool, ok := strings.Cut(rest, ".")
	if !ok || region == "" || pool == "" || strings.Contains(pool, ".") {
		return "", false
	}
	return pool, true
}
