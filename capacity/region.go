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
}

// RegionsReport is what GET /v1/regions answers.
type RegionsReport struct {
	Region  string // the observing region
	Regions []RegionStatus
}
