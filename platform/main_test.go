package platform

import (
	"testing"

	"go.uber.org/goleak"
)

// lumberjackMill is the goroutine gopkg.in/natefinch/lumberjack.v2 (the
// audit log's rotation) starts for each rotated file and never stops.
var lumberjackMill = goleak.IgnoreTopFunction("gopkg.in/natefinch/lumberjack%2ev2.(*Logger).millRun")

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, lumberjackMill)
}
