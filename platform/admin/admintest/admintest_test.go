package admintest

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
)

// outcomeTB records how requireChromium ended a test.
type outcomeTB struct {
	testing.TB
	skipped, failed string
}

func (o *outcomeTB) Helper() {}

func (o *outcomeTB) Skipf(format string, args ...any) {
	o.skipped = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func (o *outcomeTB) Fatalf(format string, args ...any) {
	o.failed = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func runRequireChromium(t *testing.T, find func() (string, error)) (*outcomeTB, string) {
	o := &outcomeTB{TB: t}
	var path string
	done := make(chan struct{})
	go func() {
		defer close(done)
		path = requireChromium(o, find)
	}()
	<-done
	return o, path
}

func missing() (string, error) { return "", fmt.Errorf("%w: none here", ErrNoChromium) }

func TestRequireChromium_SkipsWithoutChromiumOutsideCI(t *testing.T) {
	t.Setenv("CI", "")
	o, _ := runRequireChromium(t, missing)
	assert.Contains(t, o.skipped, "chromium not found: none here")
	assert.Empty(t, o.failed)
}

func TestRequireChromium_FailsWithoutChromiumInCI(t *testing.T) {
	t.Setenv("CI", "true")
	o, _ := runRequireChromium(t, missing)
	assert.Empty(t, o.skipped)
	assert.Contains(t, o.failed, "chromium not found: none here; CI is set, so the browser tests may not be skipped")
}

func TestRequireChromium_ReturnsThePathWhenFound(t *testing.T) {
	t.Setenv("CI", "true")
	o, path := runRequireChromium(t, func() (string, error) { return "/opt/chromium", nil })
	assert.Empty(t, o.skipped)
	assert.Empty(t, o.failed)
	assert.Equal(t, "/opt/chromium", path)
}

func TestCellSelector_QuotesValues(t *testing.T) {
	assert.Equal(t, `td.cell[data-user="bobby"][data-target="weather.temperature"]`, CellSelector("bobby", "weather.temperature"))
	assert.Equal(t, `td.cell[data-user="a\"b\\c"][data-target="x\a y"]`, CellSelector(`a"b\c`, "x\ny"))
}
