package web

import (
	"context"
	"net/http"
	"slices"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/capacityd/capacityd/capacity"
)

// Regions reports the regions this one knows (cmd/capacityd's app, over
// the event stream and its mirrors). Errors are *capacity.Error values
// (EUNAVAILABLE) or internal.
type Regions interface {
	Regions(ctx context.Context) (capacity.RegionsReport, error)
	// Promote makes the serving region the writer of region's pools
	// (POST /v1/admin/regions/{region}/promote).
	Promote(ctx context.Context, region string) (capacity.Promotion, error)
}

// regionJSON is one region in GET /v1/regions: the contract's fields, then
// extensions (mirror_active_ms, read_position, error).
type regionJSON struct {
	Name         string `json:"name"`
	Writer       string `json:"writer"`
	Epoch        uint64 `json:"epoch"`
	Reachable    bool   `json:"reachable"`
	LastSeq      uint64 `json:"last_seq"`
	MirrorLag    uint64 `json:"mirror_lag"`
	MirrorActive int64  `json:"mirror_active_ms"`
	ReadPosition uint64 `json:"read_position"`
	Error        string `json:"error,omitempty"`
	// Tail is, for the serving region when it was fenced, what it wrote
	// that the new writer never received.
	Tail *tailJSON `json:"fenced_tail,omitempty"`
	// Verify is capacityd verify's last verdict on the region, as
	// published in the serving region's domain.
	Verify *verdictJSON `json:"verify,omitempty"`
}

// verdictJSON is capacityd verify's last verdict on a region.
type verdictJSON struct {
	At          time.Time `json:"at"`
	AgeMS       int64     `json:"age_ms"`
	OK          bool      `json:"ok"`
	Head        string    `json:"head"`
	Epoch       uint64    `json:"epoch"`
	HeadLastSeq uint64    `json:"head_last_seq"`
	Copies      int       `json:"copies"`
	ReadModels  int       `json:"read_models"`
	Summary     string    `json:"summary"`
}

// tailJSON is a fenced region's tail: events first_seq..last_seq of its
// own stream, kept there, never merged.
type tailJSON struct {
	Epoch    uint64 `json:"epoch"`
	Writer   string `json:"writer"`
	FirstSeq uint64 `json:"first_seq"`
	LastSeq  uint64 `json:"last_seq"`
	Stream   string `json:"stream,omitempty"`
	Count    uint64 `json:"count"`
}

// regionsJSON is the answer of GET /v1/regions.
type regionsJSON struct {
	Region  string       `json:"region"`
	Regions []regionJSON `json:"regions"`
}

func handleRegions(regions Regions, now func() time.Time) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if regions == nil {
			Error(w, r, capacity.Errorf(capacity.EUNAVAILABLE, "regions are not configured"))
			return
		}
		rep, err := regions.Regions(r.Context())
		if err != nil {
			Error(w, r, err)
			return
		}
		at := now()
		out := regionsJSON{Region: rep.Region, Regions: make([]regionJSON, len(rep.Regions))}
		for i, st := range rep.Regions {
			active := int64(-1)
			if st.MirrorActive >= 0 {
				active = st.MirrorActive.Milliseconds()
			}
			out.Regions[i] = regionJSON{Name: st.Name, Writer: st.Writer, Epoch: st.Epoch, Reachable: st.Reachable,
				LastSeq: st.LastSeq, MirrorLag: st.MirrorLag, MirrorActive: active, ReadPosition: st.ReadPosition, Error: st.Error}
			if v := st.Verify; v != nil {
				out.Regions[i].Verify = &verdictJSON{At: v.At, AgeMS: max(0, at.Sub(v.At).Milliseconds()), OK: v.OK, Head: v.Head, Epoch: v.Epoch,
					HeadLastSeq: v.HeadLastSeq, Copies: v.Copies, ReadModels: v.ReadModels, Summary: v.Summary}
			}
			if t := st.Tail; t != nil {
				out.Regions[i].Tail = &tailJSON{Epoch: t.Epoch, Writer: t.Writer, FirstSeq: t.FirstSeq, LastSeq: t.LastSeq, Count: t.Count(), Stream: t.Stream}
			}
		}
		encode(w, r, http.StatusOK, out)
	}
}

// promotionJSON is the answer of POST /v1/admin/regions/{region}/promote.
type promotionJSON struct {
	Region     string          `json:"region"`
	Writer     string          `json:"writer"`
	Epoch      uint64          `json:"epoch"`
	Mode       string          `json:"mode"`
	LastSeq    uint64          `json:"last_seq"`
	Incomplete *incompleteJSON `json:"incomplete_commit,omitempty"`
	TookMS     int64           `json:"took_ms"`
}

// incompleteJSON is an atomic commit the promoted copy held only part of:
// fenced, its messages deleted from it (fenced, pools).
type incompleteJSON struct {
	Commit   string       `json:"commit"`
	FirstSeq uint64       `json:"first_seq"`
	LastSeq  uint64       `json:"last_seq"`
	Have     int          `json:"have"`
	Want     int          `json:"want"`
	Fenced   []fencedJSON `json:"fenced"`
	Pools    []string     `json:"pools"`
}

// fencedJSON is one message of a fenced commit.
type fencedJSON struct {
	Seq   uint64 `json:"seq"`
	Pool  string `json:"pool"`
	MsgID string `json:"msg_id"`
	Type  string `json:"type"`
}

func handlePromote(regions Regions) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if regions == nil {
			Error(w, r, capacity.Errorf(capacity.EUNAVAILABLE, "regions are not configured"))
			return
		}
		region := chi.URLParam(r, "region")
		if err := CheckID("region", region); err != nil {
			Error(w, r, err)
			return
		}
		p, err := regions.Promote(r.Context(), region)
		if err != nil {
			Error(w, r, err)
			return
		}
		out := promotionJSON{Region: p.Region, Writer: p.Writer, Epoch: p.Epoch, Mode: p.Mode, LastSeq: p.LastSeq, TookMS: p.Took.Milliseconds()}
		if ic := p.Incomplete; ic != nil {
			out.Incomplete = &incompleteJSON{Commit: ic.Commit, FirstSeq: ic.FirstSeq, LastSeq: ic.LastSeq, Have: ic.Have, Want: ic.Want,
				Fenced: []fencedJSON{}, Pools: []string{}}
			for _, m := range ic.Fenced {
				out.Incomplete.Fenced = append(out.Incomplete.Fenced, fencedJSON{Seq: m.Seq, Pool: m.Pool, MsgID: m.ID, Type: m.Type})
				if !slices.Contains(out.Incomplete.Pools, m.Pool) {
					out.Incomplete.Pools = append(out.Incomplete.Pools, m.Pool)
				}
			}
		}
		encode(w, r, http.StatusOK, out)
	}
}
