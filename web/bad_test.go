package web

import (
	"net/http"
	"strings"
	"testing"
)

// TestBadRequests sends bad input to every route and checks the problem
// answered, and that nothing was written.
func TestBadRequests(t *testing.T) {
	s := newStack(t, withLookup(noReservations{}))
	h := s.handler
	definePool(t, s, "bad", 10)
	wantStatus(t, do(t, h, req{method: "POST", path: "/v1/pools/bad/holds", body: `{"reservation_id":"held","quantity":1}`}), http.StatusCreated)
	wantStatus(t, do(t, h, req{method: "POST", path: "/v1/bookings", body: `{"booking_id":"bk","items":[{"pool":"bad","quantity":1}]}`}), http.StatusCreated)
	before := poolVersion(t, s, "bad")

	long := strings.Repeat("x", 65)
	huge := `{"reservation_id":"big","quantity":1,"ttl":"` + strings.Repeat("1", 70<<10) + `"}`
	hold := func(body string) req { return req{method: "POST", path: "/v1/pools/bad/holds", body: body} }
	bookReq := func(body string) req { return req{method: "POST", path: "/v1/bookings", body: body} }
	post := func(path, body string) req { return req{method: "POST", path: path, body: body} }
	const item = `{"pool":"bad","quantity":1}`
	seventeen := strings.TrimSuffix(strings.Repeat(`{"pool":"p","quantity":1},`, 17), ",")
	put := func(body string) req { return req{method: "PUT", path: "/v1/pools/bad", body: body} }
	patch := func(body string, ifMatch string) req {
		r := req{method: "PATCH", path: "/v1/pools/bad", body: body}
		if ifMatch != "" {
			r.header = map[string]string{"If-Match": ifMatch}
		}
		return r
	}
	const def = `"region":"north","kind":"delivery","starts_at":"2026-05-01T18:00:00Z","ends_at":"2026-05-01T19:00:00Z"`
	tests := []struct {
		name   string
		req    req
		status int
		code   string
		field  string // a member expected in the problem's errors
	}{
		{"malformed JSON", hold(`{"reservation_id":`), 400, "invalid-request", ""},
		{"not JSON", hold(`reservation please`), 400, "invalid-request", ""},
		{"empty body", hold(``), 400, "invalid-request", ""},
		{"null body", hold(`null`), 400, "invalid-request", "quantity"},
		{"array body", hold(`[1,2]`), 400, "invalid-request", ""},
		{"quantity a string", hold(`{"reservation_id":"n1","quantity":"1"}`), 400, "invalid-request", "quantity"},
		{"quantity a fraction", hold(`{"reservation_id":"n1","quantity":1.5}`), 400, "invalid-request", "quantity"},
		{"ttl a number", hold(`{"reservation_id":"n1","quantity":1,"ttl":600}`), 400, "invalid-request", "ttl"},
		{"reservation id a number", hold(`{"reservation_id":7,"quantity":1}`), 400, "invalid-request", "reservation_id"},
		{"unknown field", hold(`{"reservation_id":"n1","quantity":1,"priority":9}`), 400, "invalid-request", "priority"},
		{"trailing object", hold(`{"reservation_id":"n1","quantity":1}{}`), 400, "invalid-request", ""},
		{"trailing garbage", hold(`{"reservation_id":"n1","quantity":1} x`), 400, "invalid-request", ""},
		{"huge body", hold(huge), 413, "request-too-large", ""},
		{"huge chunked body", req{method: "POST", path: "/v1/pools/bad/holds", body: huge, chunked: true}, 413, "request-too-large", ""},
		{"text body", req{method: "POST", path: "/v1/pools/bad/holds", body: `{"reservation_id":"n1","quantity":1}`,
			header: map[string]string{"Content-Type": "text/plain"}}, 415, "unsupported-media-type", ""},
		{"latin-1 body", req{method: "POST", path: "/v1/pools/bad/holds", body: `{"reservation_id":"n1","quantity":1}`,
			header: map[string]string{"Content-Type": "application/json; charset=latin1"}}, 415, "unsupported-media-type", ""},
		{"quantity missing", hold(`{"reservation_id":"n1"}`), 400, "invalid-request", "quantity"},
		{"quantity negative", hold(`{"reservation_id":"n1","quantity":-1}`), 400, "invalid-request", "quantity"},
		{"quantity zero", hold(`{"reservation_id":"n1","quantity":0}`), 400, "invalid-request", "quantity"},
		{"quantity too large", hold(`{"reservation_id":"n1","quantity":1000001}`), 400, "invalid-request", "quantity"},
		{"quantity overflows", hold(`{"reservation_id":"n1","quantity":1e30}`), 400, "invalid-request", "quantity"},
		{"quantity past int64", hold(`{"reservation_id":"n1","quantity":99999999999999999999}`), 400, "invalid-request", "quantity"},
		{"reservation id missing", hold(`{"quantity":1}`), 400, "invalid-request", "reservation_id"},
		{"reservation id too long", hold(`{"reservation_id":"` + long + `","quantity":1}`), 400, "invalid-request", "reservation_id"},
		{"reservation id bad chars", hold(`{"reservation_id":"a/b","quantity":1}`), 400, "invalid-request", "reservation_id"},
		{"reservation id unicode", hold(`{"reservation_id":"café","quantity":1}`), 400, "invalid-request", "reservation_id"},
		{"ttl not a duration", hold(`{"reservation_id":"n1","quantity":1,"ttl":"soon"}`), 400, "invalid-request", "ttl"},
		{"ttl without unit", hold(`{"reservation_id":"n1","quantity":1,"ttl":"10"}`), 400, "invalid-request", "ttl"},
		{"ttl too small", hold(`{"reservation_id":"n1","quantity":1,"ttl":"500ms"}`), 400, "invalid-request", "ttl"},
		{"ttl negative", hold(`{"reservation_id":"n1","quantity":1,"ttl":"-5m"}`), 400, "invalid-request", "ttl"},
		{"ttl too large", hold(`{"reservation_id":"n1","quantity":1,"ttl":"169h"}`), 400, "invalid-request", "ttl"},
		{"ttl empty", hold(`{"reservation_id":"n1","quantity":1,"ttl":""}`), 400, "invalid-request", "ttl"},
		{"pool id too long", req{method: "POST", path: "/v1/pools/" + long + "/holds", body: `{"reservation_id":"n1","quantity":1}`}, 400, "invalid-request", "pool"},
		{"pool id with a dot", req{method: "GET", path: "/v1/pools/a.b"}, 400, "invalid-request", "pool"},
		{"pool id with a space", req{method: "GET", path: "/v1/pools/a%20b"}, 400, "invalid-request", "pool"},
		{"pool id with a slash", req{method: "GET", path: "/v1/pools/a%2Fb"}, 400, "invalid-request", "pool"},
		{"pool id too long on PUT", req{method: "PUT", path: "/v1/pools/" + long, body: `{` + def + `,"capacity":1}`}, 400, "invalid-request", "pool"},
		{"reservation id too long in path", req{method: "POST", path: "/v1/pools/bad/reservations/" + long + "/confirm"}, 400, "invalid-request", "id"},
		{"reservation id bad chars in path", req{method: "GET", path: "/v1/pools/bad/reservations/a$b"}, 400, "invalid-request", "id"},
		{"unknown reservation confirm", req{method: "POST", path: "/v1/pools/bad/reservations/nope/confirm"}, 404, "not-found", ""},
		{"unknown reservation release", req{method: "POST", path: "/v1/pools/bad/reservations/nope/release"}, 404, "not-found", ""},
		{"unknown pool hold", req{method: "POST", path: "/v1/pools/nope/holds", body: `{"reservation_id":"n1","quantity":1}`}, 404, "not-found", ""},
		{"unknown pool get", req{method: "GET", path: "/v1/pools/nope"}, 404, "not-found", ""},
		{"unknown pool patch", req{method: "PATCH", path: "/v1/pools/nope", body: `{"capacity":3}`}, 404, "not-found", ""},
		{"unknown pool reservation", req{method: "GET", path: "/v1/pools/nope/reservations/held"}, 404, "not-found", ""},
		{"bad start time", put(`{"region":"north","kind":"delivery","starts_at":"2026-05-01 18:00","ends_at":"2026-05-01T19:00:00Z","capacity":1}`), 400, "invalid-request", "starts_at"},
		{"bad end time", put(`{"region":"north","kind":"delivery","starts_at":"2026-05-01T18:00:00Z","ends_at":"tomorrow","capacity":1}`), 400, "invalid-request", "ends_at"},
		{"month 13", put(`{"region":"north","kind":"delivery","starts_at":"2026-13-01T18:00:00Z","ends_at":"2026-05-01T19:00:00Z","capacity":1}`), 400, "invalid-request", "starts_at"},
		{"time a number", put(`{"region":"north","kind":"delivery","starts_at":1746115200,"ends_at":"2026-05-01T19:00:00Z","capacity":1}`), 400, "invalid-request", "starts_at"},
		{"ends before starts", put(`{"region":"north","kind":"delivery","starts_at":"2026-05-01T19:00:00Z","ends_at":"2026-05-01T18:00:00Z","capacity":1}`), 400, "invalid-request", "ends_at"},
		{"ends at starts", put(`{"region":"north","kind":"delivery","starts_at":"2026-05-01T18:00:00Z","ends_at":"2026-05-01T18:00:00Z","capacity":1}`), 400, "invalid-request", "ends_at"},
		{"capacity missing", put(`{` + def + `}`), 400, "invalid-request", "capacity"},
		{"capacity negative", put(`{` + def + `,"capacity":-1}`), 400, "invalid-request", "capacity"},
		{"capacity too large", put(`{` + def + `,"capacity":1000000001}`), 400, "invalid-request", "capacity"},
		{"overbook negative", put(`{` + def + `,"capacity":1,"overbook":-2}`), 400, "invalid-request", "overbook"},
		{"region missing", put(`{"kind":"delivery","starts_at":"2026-05-01T18:00:00Z","ends_at":"2026-05-01T19:00:00Z","capacity":1}`), 400, "invalid-request", "region"},
		{"kind bad chars", put(`{"region":"north","kind":"de livery","starts_at":"2026-05-01T18:00:00Z","ends_at":"2026-05-01T19:00:00Z","capacity":1}`), 400, "invalid-request", "kind"},
		{"id differs from path", put(`{"id":"other",` + def + `,"capacity":10}`), 400, "invalid-request", "id"},
		{"define differently", put(`{` + def + `,"capacity":11}`), 409, "conflict", ""},
		{"patch with nothing", patch(`{}`, ""), 400, "invalid-request", "capacity"},
		{"patch with no body", patch(``, ""), 400, "invalid-request", ""},
		{"patch bad status", patch(`{"status":"paused"}`, ""), 400, "invalid-request", "status"},
		{"patch status a bool", patch(`{"status":true}`, ""), 400, "invalid-request", "status"},
		{"patch negative capacity", patch(`{"capacity":-3}`, ""), 400, "invalid-request", "capacity"},
		{"patch negative overbook", patch(`{"overbook":-1}`, ""), 400, "invalid-request", "overbook"},
		{"patch overbook too large", patch(`{"overbook":1000000001}`, ""), 400, "invalid-request", "overbook"},
		{"patch overbook a string", patch(`{"overbook":"2"}`, ""), 400, "invalid-request", "overbook"},
		{"confirm with a text body", req{method: "POST", path: "/v1/pools/bad/reservations/held/confirm", body: `yes`,
			header: map[string]string{"Content-Type": "text/plain"}}, 415, "unsupported-media-type", ""},
		{"confirm with a body not JSON", req{method: "POST", path: "/v1/pools/bad/reservations/held/confirm", body: `yes please`}, 400, "invalid-request", ""},
		{"confirm with unknown fields", req{method: "POST", path: "/v1/pools/bad/reservations/held/confirm", body: `{"force":true}`}, 400, "invalid-request", "force"},
		{"release with a JSON array", req{method: "POST", path: "/v1/pools/bad/reservations/held/release", body: `[]`}, 400, "invalid-request", ""},
		{"release with a form body", req{method: "POST", path: "/v1/pools/bad/reservations/held/release", body: `a=b`,
			header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}}, 415, "unsupported-media-type", ""},
		{"patch unknown field", patch(`{"capacity":3,"region":"south"}`, ""), 400, "invalid-request", "region"},
		{"if-match not a number", patch(`{"capacity":3}`, `"abc"`), 400, "invalid-request", "If-Match"},
		{"if-match a list", patch(`{"capacity":3}`, `"1", "2"`), 400, "invalid-request", "If-Match"},
		{"if-match bare W/", patch(`{"capacity":3}`, `W/`), 400, "invalid-request", "If-Match"},
		{"if-match negative", patch(`{"capacity":3}`, `"-1"`), 400, "invalid-request", "If-Match"},
		{"if-match overflows", patch(`{"capacity":3}`, `"99999999999999999999"`), 400, "invalid-request", "If-Match"},
		{"if-match stale", patch(`{"capacity":3}`, `"1"`), 412, "precondition-failed", ""},
		{"events from zero", req{method: "GET", path: "/v1/pools/bad/events?from=0"}, 400, "invalid-request", "from"},
		{"events from negative", req{method: "GET", path: "/v1/pools/bad/events?from=-1"}, 400, "invalid-request", "from"},
		{"events from a word", req{method: "GET", path: "/v1/pools/bad/events?from=first"}, 400, "invalid-request", "from"},
		{"events from empty", req{method: "GET", path: "/v1/pools/bad/events?from="}, 400, "invalid-request", "from"},
		{"events limit zero", req{method: "GET", path: "/v1/pools/bad/events?limit=0"}, 400, "invalid-request", "limit"},
		{"events limit too large", req{method: "GET", path: "/v1/pools/bad/events?limit=10001"}, 400, "invalid-request", "limit"},
		{"availability bad from", req{method: "GET", path: "/v1/availability?from=noon"}, 400, "invalid-request", "from"},
		{"availability bad region", req{method: "GET", path: "/v1/availability?region=a.b"}, 400, "invalid-request", "region"},
		{"availability bad limit", req{method: "GET", path: "/v1/availability?limit=0"}, 400, "invalid-request", "limit"},
		{"availability bad min_position", req{method: "GET", path: "/v1/availability?min_position=x"}, 400, "invalid-request", "min_position"},
		{"availability min_position bad region", req{method: "GET", path: "/v1/availability?min_position=a.b:3"}, 400, "invalid-request", "min_position"},
		{"availability min_position region twice", req{method: "GET", path: "/v1/availability?min_position=a:3,a:4"}, 400, "invalid-request", "min_position"},
		{"availability min_position no number", req{method: "GET", path: "/v1/availability?min_position=a:"}, 400, "invalid-request", "min_position"},
		{"extend without a body", post("/v1/pools/bad/reservations/held/extend", ``), 400, "invalid-request", ""},
		{"extend without a ttl", post("/v1/pools/bad/reservations/held/extend", `{}`), 400, "invalid-request", "ttl"},
		{"extend ttl not a duration", post("/v1/pools/bad/reservations/held/extend", `{"ttl":"later"}`), 400, "invalid-request", "ttl"},
		{"extend ttl too long", post("/v1/pools/bad/reservations/held/extend", `{"ttl":"200h"}`), 400, "invalid-request", "ttl"},
		{"extend unknown field", post("/v1/pools/bad/reservations/held/extend", `{"ttl":"5m","by":"me"}`), 400, "invalid-request", "by"},
		{"extend unknown reservation", post("/v1/pools/bad/reservations/nope/extend", `{"ttl":"5m"}`), 404, "not-found", ""},
		{"extend a booking's part", post("/v1/pools/bad/reservations/bk/extend", `{"ttl":"5m"}`), 409, "conflict", ""},
		{"confirm quantity zero", post("/v1/pools/bad/reservations/held/confirm", `{"quantity":0}`), 400, "invalid-request", "quantity"},
		{"confirm quantity a string", post("/v1/pools/bad/reservations/held/confirm", `{"quantity":"1"}`), 400, "invalid-request", "quantity"},
		{"confirm more than held", post("/v1/pools/bad/reservations/held/confirm", `{"quantity":2}`), 400, "invalid-request", ""},
		{"confirm unknown field", post("/v1/pools/bad/reservations/held/confirm", `{"qty":1}`), 400, "invalid-request", "qty"},
		{"confirm malformed body", post("/v1/pools/bad/reservations/held/confirm", `{"quantity":`), 400, "invalid-request", ""},
		{"release with a body", post("/v1/pools/bad/reservations/held/release", `{"now":true}`), 400, "invalid-request", "now"},
		{"book malformed JSON", bookReq(`{"booking_id":`), 400, "invalid-request", ""},
		{"book empty body", bookReq(``), 400, "invalid-request", ""},
		{"book without id", bookReq(`{"items":[` + item + `]}`), 400, "invalid-request", "booking_id"},
		{"book bad id", bookReq(`{"booking_id":"a/b","items":[` + item + `]}`), 400, "invalid-request", "booking_id"},
		{"book without items", bookReq(`{"booking_id":"n1"}`), 400, "invalid-request", "items"},
		{"book no items", bookReq(`{"booking_id":"n1","items":[]}`), 400, "invalid-request", "items"},
		{"book items an object", bookReq(`{"booking_id":"n1","items":` + item + `}`), 400, "invalid-request", "items"},
		{"book seventeen items", bookReq(`{"booking_id":"n1","items":[` + seventeen + `]}`), 400, "invalid-request", "items"},
		{"book a pool twice", bookReq(`{"booking_id":"n1","items":[` + item + `,` + item + `]}`), 400, "invalid-request", "items[1].pool"},
		{"book bad pool id", bookReq(`{"booking_id":"n1","items":[{"pool":"a.b","quantity":1}]}`), 400, "invalid-request", "items[0].pool"},
		{"book quantity zero", bookReq(`{"booking_id":"n1","items":[{"pool":"bad","quantity":0}]}`), 400, "invalid-request", "items[0].quantity"},
		{"book quantity missing", bookReq(`{"booking_id":"n1","items":[{"pool":"bad"}]}`), 400, "invalid-request", "items[0].quantity"},
		{"book item unknown field", bookReq(`{"booking_id":"n1","items":[{"pool":"bad","quantity":1,"note":"x"}]}`), 400, "invalid-request", "note"},
		{"book unknown field", bookReq(`{"booking_id":"n1","items":[` + item + `],"rush":true}`), 400, "invalid-request", "rush"},
		{"book ttl bad", bookReq(`{"booking_id":"n1","items":[` + item + `],"ttl":"10"}`), 400, "invalid-request", "ttl"},
		{"book huge body", bookReq(`{"booking_id":"n1","items":[` + item + `],"ttl":"` + strings.Repeat("1", 70<<10) + `"}`), 413, "request-too-large", ""},
		{"book text body", req{method: "POST", path: "/v1/bookings", body: `{}`, header: map[string]string{"Content-Type": "text/plain"}}, 415, "unsupported-media-type", ""},
		{"book an unknown pool", bookReq(`{"booking_id":"n1","items":[` + item + `,{"pool":"nope","quantity":1}]}`), 404, "not-found", ""},
		{"book too much", bookReq(`{"booking_id":"n1","items":[{"pool":"bad","quantity":9}]}`), 409, "insufficient-capacity", ""},
		{"book the id of a hold", bookReq(`{"booking_id":"held","items":[` + item + `]}`), 409, "conflict", ""},
		{"book again differently", bookReq(`{"booking_id":"bk","items":[{"pool":"bad","quantity":2}]}`), 409, "conflict", ""},
		{"booking id bad in path", req{method: "GET", path: "/v1/bookings/a$b"}, 400, "invalid-request", "id"},
		{"booking id too long", post("/v1/bookings/"+long+"/confirm", ``), 400, "invalid-request", "id"},
		{"unknown booking", req{method: "GET", path: "/v1/bookings/nope"}, 404, "not-found", ""},
		{"unknown booking confirm", post("/v1/bookings/nope/confirm", ``), 404, "not-found", ""},
		{"a hold is not a booking", post("/v1/bookings/held/release", ``), 404, "not-found", ""},
		{"booking min_position bad", req{method: "GET", path: "/v1/bookings/bk?min_position=x"}, 400, "invalid-request", "min_position"},
		{"booking confirm with a body", post("/v1/bookings/bk/confirm", `{"quantity":1}`), 400, "invalid-request", "quantity"},
		{"booking extend without ttl", post("/v1/bookings/bk/extend", `{}`), 400, "invalid-request", "ttl"},
		{"booking extend bad ttl", post("/v1/bookings/bk/extend", `{"ttl":"0s"}`), 400, "invalid-request", "ttl"},
		{"wrong method on bookings", req{method: "GET", path: "/v1/bookings"}, 405, "method-not-allowed", ""},
		{"wrong method on a booking", req{method: "DELETE", path: "/v1/bookings/bk"}, 405, "method-not-allowed", ""},
		{"unknown route", req{method: "GET", path: "/v2/pools/bad"}, 404, "not-found", ""},
		{"wrong method", req{method: "DELETE", path: "/v1/pools/bad"}, 405, "method-not-allowed", ""},
		{"wrong method on holds", req{method: "GET", path: "/v1/pools/bad/holds"}, 405, "method-not-allowed", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := do(t, h, tc.req)
			p := wantProblem(t, res, tc.status, tc.code)
			if tc.field != "" {
				errs, _ := p["errors"].(map[string]any)
				if _, ok := errs[tc.field]; !ok {
					t.Errorf("errors = %v, want a problem with %q", p["errors"], tc.field)
				}
			}
			if tc.status == http.StatusMethodNotAllowed && res.Header.Get("Allow") == "" {
				t.Errorf("405 without Allow")
			}
			if got := poolVersion(t, s, "bad"); got != before {
				t.Errorf("pool version = %d after a bad request, want %d", got, before)
			}
		})
	}
}
