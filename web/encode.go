package web

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
)

// validator is a request body that can check itself. Valid returns a
// problem per field, empty when the request is valid.
type validator interface {
	Valid(ctx context.Context) map[string]string
}

// encode writes v as JSON with the given status.
func encode(w http.ResponseWriter, r *http.Request, status int, v any) {
	encodeAs(w, r, status, "application/json", v)
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// encodeAs encodes v into a buffer first, so an encoding failure becomes a
// clean 500 rather than half a body.
func encodeAs(w http.ResponseWriter, r *http.Request, status int, contentType string, v any) {
	buf := bufPool.Get().(*bytes.Buffer)
	defer func() { buf.Reset(); bufPool.Put(buf) }()
	if fast, ok := v.(jsonAppender); ok {
		if body, ok := fast.appendJSON(buf.AvailableBuffer()); ok {
			buf.Write(append(body, '\n')) // as json.Encoder ends a value
			writeEncoded(w, r, status, contentType, buf)
			return
		}
	}
	if err := json.NewEncoder(buf).Encode(v); err != nil {
		if _, isProblem := v.(problem); !isProblem {
			Error(w, r, fmt.Errorf("encoding response: %w", err))
			return
		}
		http.Error(w, `{"type":"`+ProblemTypeBase+`internal","title":"Internal error","status":500,"detail":"Internal error."}`, http.StatusInternalServerError)
		return
	}
	writeEncoded(w, r, status, contentType, buf)
}

// writeEncoded writes an encoded body with its head.
func writeEncoded(w http.ResponseWriter, r *http.Request, status int, contentType string, buf *bytes.Buffer) {
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(buf.Bytes())
	}
}

// decode reads one strict JSON value of type T from the request body and
// validates it: unknown fields, trailing data, wrong types, a body over the
// limit or a content type other than JSON are refused before Valid runs.
func decode[T validator](r *http.Request) (T, error) {
	var v T
	if err := checkContentType(r); err != nil {
		return v, err
	}
	return decodeFrom[T](r.Context(), r.Body)
}

// decodeFrom reads one strict JSON value of type T from body and
// validates it; decode and the NATS service (DecodeHold etc.) share it.
func decodeFrom[T validator](ctx context.Context, body io.Reader) (T, error) {
	var v T
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		return v, decodeError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var maxErr *http.MaxBytesError
		if errors.As(err, &maxErr) {
			return v, decodeError(err)
		}
		return v, invalid("request body must hold a single JSON object", nil)
	}
	if problems := v.Valid(ctx); len(problems) > 0 {
		return v, invalid("request has invalid fields", problems)
	}
	return v, nil
}

// decodeOptional is decode for a body that may be left out: an empty (or
// all-blank) body is T's zero value, still validated.
func decodeOptional[T validator](r *http.Request) (T, error) {
	var v T
	data, err := io.ReadAll(r.Body)
	if err != nil {
		return v, decodeError(err)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		if problems := v.Valid(r.Context()); len(problems) > 0 {
			return v, invalid("request has invalid fields", problems)
		}
		return v, nil
	}
	r.Body = io.NopCloser(bytes.NewReader(data))
	return decode[T](r)
}

// checkContentType accepts a missing Content-Type, application/json and
// any application/*+json.
func checkContentType(r *http.Request) error {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return nil
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err == nil && (mt == "application/json" || strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json")) {
		if cs, ok := params["charset"]; !ok || strings.EqualFold(cs, "utf-8") {
			return nil
		}
	}
	return &requestError{code: codeUnsupportedMedia, detail: "request body must be application/json (UTF-8)"}
}

// decodeError turns a json decoding error into a client-safe problem.
func decodeError(err error) error {
	var (
		maxErr    *http.MaxBytesError
		syntaxErr *json.SyntaxError
		typeErr   *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &maxErr):
		return &requestError{code: codeTooLarge, detail: fmt.Sprintf("request body is larger than %d bytes", maxErr.Limit)}
	case errors.Is(err, io.EOF):
		return invalid("request body is empty; a JSON object is required", nil)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return invalid("request body is truncated JSON", nil)
	case errors.As(err, &syntaxErr):
		return invalid(fmt.Sprintf("request body is malformed JSON at byte %d", syntaxErr.Offset), nil)
	case errors.As(err, &typeErr):
		field := typeErr.Field
		if field == "" {
			return invalid("request body must be a JSON object", nil)
		}
		return invalid("request has invalid fields", map[string]string{field: "must be " + jsonKind(typeErr.Type.Kind().String())})
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return invalid("request has unknown fields", map[string]string{name: "unknown field"})
	}
	return invalid("request body is not valid JSON", nil)
}

// jsonKind names a Go kind the way a JSON client thinks of it.
func jsonKind(kind string) string {
	switch kind {
	case "int", "int64", "int32", "uint64", "uint32", "uint":
		return "an integer in range"
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	}
	return "of the documented type"
}
