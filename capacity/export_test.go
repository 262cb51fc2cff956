package capacity

import "time"

// SetRetainFinished shortens RetainFinished for a test; the returned
// function restores it.
func SetRetainFinished(d time.Duration) (restore func()) {
	old := retainFinished
	retainFinished = d
	return func() { retainFinished = old }
}
