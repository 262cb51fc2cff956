package web

import (
	"errors"
	"net/http"

	"github.com/capacityd/capacityd/capacity"
)

// ProblemTypeBase prefixes every problem type: a problem's type is
// ProblemTypeBase + its code, e.g. https://capacityd.dev/problems/not-found.
const ProblemTypeBase = "https://capacityd.dev/problems/"

// Problem codes of the HTTP layer itself, beside capacity's error codes.
const (
	codeTooLarge         = "request-too-large"
	codeUnsupportedMedia = "unsupported-media-type"
	codeMethodNotAllowed = "method-not-allowed"
)

// problemKind is the status and title of one problem code.
type problemKind struct {
	status int
	title  string
}

var problemKinds = map[string]problemKind{
	capacity.EINVALID:      {http.StatusBadRequest, "Invalid request"},
	capacity.ENOTFOUND:     {http.StatusNotFound, "Not found"},
	capacity.ECONFLICT:     {http.StatusConflict, "Conflict"},
	capacity.EINSUFFICIENT: {http.StatusConflict, "Insufficient capacity"},
	capacity.ECLOSED:       {http.StatusConflict, "Pool closed"},
	capacity.EEXPIRED:      {http.StatusConflict, "Hold expired"},
	capacity.EPRECONDITION: {http.StatusPreconditionFailed, "Precondition failed"},
	capacity.EUNAVAILABLE:  {http.StatusServiceUnavailable, "Service unavailable"},
	capacity.EREGION:       {http.StatusServiceUnavailable, "Region unavailable"},
	capacity.EINTERNAL:     {http.StatusInternalServerError, "Internal error"},
	codeTooLarge:           {http.StatusRequestEntityTooLarge, "Request too large"},
	codeUnsupportedMedia:   {http.StatusUnsupportedMediaType, "Unsupported media type"},
	codeMethodNotAllowed:   {http.StatusMethodNotAllowed, "Method not allowed"},
	codeUnauthorized:       {http.StatusUnauthorized, "Unauthorized"},
	codeForbidden:          {http.StatusForbidden, "Forbidden"},
	codeRateLimited:        {http.StatusTooManyRequests, "Rate limited"},
}

// problem is an RFC 9457 problem document.
type problem struct {
	Type      string            `json:"type"`
	Title     string            `json:"title"`
	Status    int               `json:"status"`
	Detail    string            `json:"detail"`
	Instance  string            `json:"instance,omitempty"`
	RequestID string            `json:"request_id,omitempty"`
	Errors    map[string]string `json:"errors,omitempty"`
	// Pool names the pool a refusal is about: the first pool short (or
	// closed) of a booking.
	Pool string `json:"pool,omitempty"`
	// Region names the writer region a forwarded write could not reach
	// (region-unavailable).
	Region string `json:"region,omitempty"`
}

// requestError is an error of the HTTP layer: a request refused before it
// reached the domain. Fields name the request members at fault.
type requestError struct {
	code   string
	detail string
	fields map[string]string
}

// Error implements error.
func (e *requestError) Error() string { return "web: " + e.code + ": " + e.detail }

// invalid returns an invalid-request error with a message per field.
func invalid(detail string, fields map[string]string) error {
	return &requestError{code: capacity.EINVALID, detail: detail, fields: fields}
}

// StatusOf returns the HTTP status of an error code: the one mapping from
// capacity's codes to statuses, which the planner UI's error pages use too.
// An unknown code is 500.
func StatusOf(code string) int {
	if kind, ok := problemKinds[code]; ok {
		return kind.status
	}
	return http.StatusInternalServerError
}

// retryAfter is the Retry-After (seconds) sent with 503 answers.
const retryAfter = "1"

// Error writes err as a problem: the code of a *capacity.Error (or of the
// HTTP layer's own errors) picks status and type; any other error is
// internal, logged with the request, and answered without its text.
func Error(w http.ResponseWriter, r *http.Request, err error) {
	p := problemOf(err)
	if p.Status == http.StatusInternalServerError {
		log := RequestLogger(r.Context())
		log.Error().Err(err).Str("method", r.Method).Str("path", r.URL.Path).Msg("internal error")
	}
	if p.Status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", retryAfter)
	}
	p.Instance, p.RequestID = r.URL.Path, requestIDFrom(r.Context())
	writeProblem(w, r, p)
}

// problemOf is the one mapping of an error to its problem.
func problemOf(err error) problem {
	code, detail := capacity.ErrorCode(err), capacity.ErrorMessage(err)
	var fields map[string]string
	var re *requestError
	if errors.As(err, &re) {
		code, detail, fields = re.code, re.detail, re.fields
	}
	kind, ok := problemKinds[code]
	if !ok {
		code, kind = capacity.EINTERNAL, problemKinds[capacity.EINTERNAL]
	}
	if code == capacity.EINTERNAL {
		detail = "Internal error."
	}
	return problem{Type: ProblemTypeBase + code, Title: kind.title, Status: kind.status, Detail: detail, Errors: fields, Pool: capacity.ErrorPool(err), Region: capacity.ErrorRegion(err)}
}

func writeProblem(w http.ResponseWriter, r *http.Request, p problem) {
	encodeAs(w, r, p.Status, "application/problem+json", p)
}
