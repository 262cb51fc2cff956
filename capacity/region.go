package capacity

import "time"

// RegionStatus is one region as another region sees it: who writes its
// pools now and how far the observer's copy of its event stream is.
type RegionStatus struct {
	Name         string        // the region
	Writer       string        // the region that writes its pools now
	Epoch        uint64        // the writer's term for the region's pools (0: never handed over)
	Reachable    bool          // its JetStream answers the observer now
	LastSeq      uint64        // last sequence of the observer's copy of its stream
	MirrorLag    uint64        // messages the observer's mirror is behind (0 for the observer itself)
	MirrorActive time.Duration // since the mirror last heard from it; -1 if never or not a mirror
	ReadPosition uint64        // sequence of it the observer's read models reflect
	Error        string        // the mirror's last error, if any
	// Tail, for the observer itself when a promotion elsewhere fenced it:
	// what it wrote that the new writer never received (nil otherwise).
	Tail *FencedTail
	// Verify is capacityd verify's last verdict on the region, as
	// published in the observer's domain (nil if none).
	Verify *VerifyVerdict
}

// RegionsReport is what GET /v1/regions answers.
type RegionsReport struct {
	Region  string // the observing region
	Regions []RegionStatus
}

// Promotion is what POST /v1/admin/regions/{region}/promote did: the
// region whose pools changed writer, the new writer and epoch, how
// (handover: the old writer stopped first and nothing was lost; takeover:
// the old writer did not answer and the copy became the head as it was),
// and LastSeq, the last sequence of the region's stream the new writer
// took over at (the recovery point).
type Promotion struct {
	Region  string
	Writer  string
	Epoch   uint64
	Mode    string // "handover" or "takeover"
	LastSeq uint64
	// Incomplete is an atomic commit the copy held only part of when it
	// was promoted (nil if none): fenced, and LastSeq is the sequence
	// before it.
	Incomplete *IncompleteCommit
	Took       time.Duration
}

// IncompleteCommit is an atomic commit of which a copy holds the first
// Have of Want messages, at sequences FirstSeq..LastSeq. Promotion fences
// it: its messages, Fenced, are deleted from the promoted copy and what
// was derived from them in the promoting region (snapshots, read models)
// is dropped.
type IncompleteCommit struct {
	Commit            string
	FirstSeq, LastSeq uint64
	Have, Want        int
	Fenced            []FencedMessage
}

// FencedMessage is one message of an incomplete commit removed from a
// promoted copy: its sequence, pool, message id and event type.
type FencedMessage struct {
	Seq  uint64
	Pool string
	ID   string
	Type string
}

// FencedTail is what a fenced region wrote after the recovery point of the
// promotion that replaced it: events FirstSeq..LastSeq of its own stream
// that the new writer never received. Kept aside in that stream, reported,
// never merged.
type FencedTail struct {
	Epoch             uint64 // the epoch that fenced it
	Writer            string // the region that writes its pools now
	FirstSeq, LastSeq uint64
	// Stream is where the tail is kept once the region follows the new
	// head: its old stream, set aside whole (CAPACITY_<REGION>_FENCED_<epoch>);
	// "" while it is still the region's own stream.
	Stream string
}

// Count is the number of messages in the tail.
func (t FencedTail) Count() uint64 {
	if t.LastSeq < t.FirstSeq {
		return 0
	}
	return t.LastSeq - t.FirstSeq + 1
}

// VerifyVerdict is the outcome of one run of capacityd verify on a
// region's stream, as published for the regions it reached: when, whether
// every copy was a prefix of the head and every read model equal to a
// fresh fold, the head it compared with, how much it checked and, when it
// failed, what differed.
type VerifyVerdict struct {
	Region      string
	At          time.Time
	OK          bool
	Head        string // the domain holding the head
	Epoch       uint64 // the head's term
	HeadLastSeq uint64
	Copies      int // copies compared with the head
	ReadModels  int // regions whose read models were checked
	Summary     string
}
