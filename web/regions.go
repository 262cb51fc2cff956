package web

import (
	"context"
	"net/http"

	"github.com/capacityd/capacityd/capacity"
)

// Regions reports the regions this one knows (cmd/capacityd's app, over
// the event stream and its mirrors). Errors are *capacity.Error values
// (EUNAVAILABLE) or internal.
type Regions interface {
	Regions(ctx context.Context) (capacity.RegionsReport, error)
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
}

// regionsJSON is the answer of GET /v1/regions.
type regionsJSON struct {
	Region  string       `json:"region"`
	Regions []regionJSON `json:"regions"`
}

func handleRegions(regions Regions) http.HandlerFunc {
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
		out := regionsJSON{Region: rep.Region, Regions: make([]regionJSON, len(rep.Regions))}
		for i, st := range rep.Regions {
			active := int64(-1)
			if st.MirrorActive >= 0 {
				active = st.MirrorActive.Milliseconds()
			}
			out.Regions[i] = regionJSON{Name: st.Name, Writer: st.Writer, Epoch: st.Epoch, Reachable: st.Reachable,
				LastSeq: st.LastSeq, MirrorLag: st.MirrorLag, MirrorActive: active, ReadPosition: st.ReadPosition, Error: st.Error}
		}
		encode(w, r, http.StatusOK, out)
	}
}
