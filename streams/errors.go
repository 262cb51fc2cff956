package streams

import (
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

var (
	// ErrConflict means the pool's subject did not end at the expected sequence: another append came first.
	ErrConflict = errors.New("streams: conflict: pool changed since expected sequence")
	// ErrUnknownOutcome means an append may or may not have been stored and the store could not find out.
	ErrUnknownOutcome = errors.New("streams: append outcome unknown")
	// ErrBatchTooLarge means an append carried more events than one atomic batch may hold.
	ErrBatchTooLarge = errors.New("streams: batch too large")
	// ErrInvalid means an argument or the stream's configuration is unusable.
	ErrInvalid = errors.New("streams: invalid")
)

// Server error codes that the store translates; see nats-server's jetstream_errors_generated.go.
const (
	codeWrongLastSequence         jetstream.ErrorCode = jetstream.JSErrCodeStreamWrongLastSequence         // 10071
	codeWrongLastSequenceConstant jetstream.ErrorCode = jetstream.JSErrCodeStreamWrongLastSequenceConstant // 10164
	codeNoMessageFound            jetstream.ErrorCode = jetstream.JSErrCodeMessageNotFound                 // 10037
	codeBatchIncomplete           jetstream.ErrorCode = 10176                                              // JSAtomicPublishIncompleteBatchErr
	codeBatchTooLarge             jetstream.ErrorCode = 10199                                              // JSAtomicPublishTooLargeBatchErrF
	codeBatchDuplicateMsgID       jetstream.ErrorCode = 10201                                              // JSAtomicPublishContainsDuplicateMessageErr
	codeBatchTooManyInflight      jetstream.ErrorCode = 10210                                              // JSAtomicPublishTooManyInflight
)

// apiErrorCode reports the JetStream API error code carried by err, if any.
func apiErrorCode(err error) (jetstream.ErrorCode, bool) {
	var ae *jetstream.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode, true
	}
	return 0, false
}

// isConflictCode reports whether code is one of the two "wrong last sequence" answers.
func isConflictCode(code jetstream.ErrorCode) bool {
	return code == codeWrongLastSequence || code == codeWrongLastSequenceConstant
}

// invalidf returns an error wrapping ErrInvalid.
func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}
