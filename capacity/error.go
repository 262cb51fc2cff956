package capacity

import (
	"errors"
	"fmt"
)

// Error codes. Each maps to one HTTP status and one problem type in web/;
// anything that is not an *Error is internal and its text never reaches a client.
const (
	EINVALID      = "invalid-request"
	ENOTFOUND     = "not-found"
	ECONFLICT     = "conflict"
	EINSUFFICIENT = "insufficient-capacity"
	ECLOSED       = "pool-closed"
	EEXPIRED      = "hold-expired"
	EPRECONDITION = "precondition-failed"
	EUNAVAILABLE  = "unavailable"
	// EREGION: the region that writes the pool did not answer a forwarded
	// write in time; Error.Region names it.
	EREGION   = "region-unavailable"
	EINTERNAL = "internal"
)

// Error is a domain error with a stable code and a message safe to show a client.
type Error struct {
	Code    string
	Message string
	// Pool, when set, is the pool the refusal is about: a booking refused
	// names the first of its pools that is short (or closed).
	Pool string
	// Region, when set, is the region a refusal is about: the writer region
	// a forwarded write could not reach (EREGION).
	Region string
}

// Error implements the error interface.
func (e *Error) Error() string {
	return fmt.Sprintf("capacity: %s: %s", e.Code, e.Message)
}

// Errorf returns an *Error with the given code and formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first *Error in err's chain, EINTERNAL for any
// other non-nil error and "" for nil.
func ErrorCode(err error) string {
	var e *Error
	if err == nil {
		return ""
	} else if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// ErrorPool returns the pool named by the first *Error in err's chain, or "".
func ErrorPool(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Pool
	}
	return ""
}

// ErrorMessage returns the client-safe message of err, or "Internal error." for
// anything that is not an *Error.
func ErrorMessage(err error) string {
	var e *Error
	if err == nil {
		return ""
	} else if errors.As(err, &e) {
		return e.Message
	}
	return "Internal error."
}

// ErrorRegion returns the region named by the first *Error in err's chain, or "".
func ErrorRegion(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Region
	}
	return ""
}
