package web

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/capacityd/capacityd/capacity"
)

// The fuzz targets feed arbitrary bodies to the request decoders. Whatever
// comes in, decoding must not panic, must refuse with a 4xx problem, and
// anything it accepts must be a command the domain accepts too: the HTTP
// layer never lets through what capacity.Validate would refuse.
//
// Their seed corpus runs with every `go test`; to fuzz for real:
//
//	go test -run x -fuzz FuzzDecodeHold -fuzztime 10m ./web/

func fuzzRequest(body string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	r.Body = http.MaxBytesReader(httptest.NewRecorder(), r.Body, DefaultMaxBodyBytes)
	return r
}

// checkRefusal asserts that a decoding error maps to a client error.
func checkRefusal(t *testing.T, body string, err error) {
	t.Helper()
	w := httptest.NewRecorder()
	Error(w, httptest.NewRequest(http.MethodPost, "/", nil), err)
	if w.Code < 400 || w.Code >= 500 {
		t.Fatalf("body %q: refused with status %d, want 4xx (%v)", body, w.Code, err)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("body %q: refusal content type %q", body, ct)
	}
}

func FuzzDecodeHold(f *testing.F) {
	for _, seed := range []string{
		`{"reservation_id":"r1","quantity":1}`,
		`{"reservation_id":"r1","quantity":1,"ttl":"10m"}`,
		`{"reservation_id":"r1","quantity":0,"ttl":"1s"}`,
		`{"reservation_id":"","quantity":1}`,
		`{"reservation_id":"r1","quantity":1e9}`,
		`{"reservation_id":"r1","quantity":"1"}`,
		`{"reservation_id":"r1","quantity":1,"ttl":"-5m"}`,
		`{"reservation_id":"r1","quantity":1,"ttl":"168h0m1s"}`,
		`{"reservation_id":"r1","quantity":1} {}`,
		`{"reservation_id":"r1","quantity":1,"extra":true}`,
		`[]`, `null`, ``, `{`, `"x"`,
		`{"reservation_id":"r1","quantity":01}`, `{"reservation_id":"r1","quantity":1,"ttl":""}`,
		`{"reservation_id":"r\"1","quantity":1}`, `{"reservation_id":"r1","quantity":1,"ttl":"1\u0068"}`,
		`{"reservation_id":"r1","quantity":1000001}`, `{"reservation_id":"r1","quantity":1,"ttl":"90s"}x`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, body string) {
		fast, fastOK := holdFast([]byte(body))
		req, err := decode[holdRequest](fuzzRequest(body))
		if err != nil {
			if fastOK {
				t.Fatalf("body %q: the fast path accepted what the decoder refuses: %v", body, err)
			}
			checkRefusal(t, body, err)
			return
		}
		ttl, problem := req.ttl()
		if problem != "" {
			t.Fatalf("body %q: accepted with a ttl problem %q", body, problem)
		}
		cmd := capacity.Hold{ReservationID: req.ReservationID, Quantity: *req.Quantity, TTL: ttl}
		if err := cmd.Validate(); err != nil {
			t.Fatalf("body %q: accepted by HTTP, refused by the domain: %v", body, err)
		}
		if fastOK && fast != cmd {
			t.Fatalf("body %q: fast path %+v, decoder %+v", body, fast, cmd)
		}
	})
}

func FuzzDecodePutPool(f *testing.F) {
	for _, seed := range []string{
		`{"region":"north","kind":"delivery","starts_at":"2027-01-01T18:00:00Z","ends_at":"2027-01-01T19:00:00Z","capacity":5}`,
		`{"region":"north","kind":"delivery","starts_at":"2027-01-01T18:00:00+01:00","ends_at":"2027-01-01T19:00:00Z","capacity":0,"overbook":2}`,
		`{"region":"north","kind":"delivery","starts_at":"2027-01-01T19:00:00Z","ends_at":"2027-01-01T18:00:00Z","capacity":5}`,
		`{"region":"no rth","kind":"d","starts_at":"x","ends_at":"y","capacity":-1}`,
		`{"id":"p1","region":"n","kind":"k","starts_at":"0000-01-01T00:00:00Z","ends_at":"9999-12-31T23:59:59Z","capacity":1}`,
		`{"region":"n","kind":"k","starts_at":"2027-01-01T18:00:00Z","ends_at":"2027-01-01T19:00:00Z","capacity":1.5}`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, body string) {
		req, err := decode[putPoolRequest](fuzzRequest(body))
		if err != nil {
			checkRefusal(t, body, err)
			return
		}
		if err := req.command("p1").Validate(); err != nil {
			t.Fatalf("body %q: accepted by HTTP, refused by the domain: %v", body, err)
		}
	})
}

func FuzzDecodePatchPool(f *testing.F) {
	for _, seed := range []string{
		`{"capacity":3}`, `{"status":"closed"}`, `{"capacity":3,"status":"open"}`,
		`{}`, `{"status":"gone"}`, `{"capacity":-3}`, `{"capacity":null}`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, body string) {
		req, err := decode[patchPoolRequest](fuzzRequest(body))
		if err != nil {
			checkRefusal(t, body, err)
			return
		}
		cmd := capacity.ChangePool{Capacity: req.Capacity}
		if req.Status != nil {
			cmd.Status = capacity.Status(*req.Status)
		}
		if err := cmd.Validate(); err != nil {
			t.Fatalf("body %q: accepted by HTTP, refused by the domain: %v", body, err)
		}
	})
}
