package main

import (
	"reflect"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/capbus/capbus/platform"
)

// TestLimitFlags_EveryLimitHasAFlagWithItsDefault: each field of
// platform.Limits can be set from `capbus platform run`, and its flag
// shows the platform's default.
func TestLimitFlags_EveryLimitHasAFlagWithItsDefault(t *testing.T) {
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	l := limitFlags(fs)
	assert.Equal(t, platform.DefaultLimits(), *l, "the flags start at the defaults")
	// Set every flag to a new value: each must land in its own field.
	var n int
	fs.VisitAll(func(f *pflag.Flag) {
		n++
		switch f.Value.Type() {
		case "duration":
			require.NoError(t, fs.Set(f.Name, "1234ms"), f.Name)
		default:
			require.NoError(t, fs.Set(f.Name, "7"), f.Name)
		}
	})
	v := reflect.ValueOf(*l)
	require.Equal(t, v.NumField(), n, "one flag per field of platform.Limits")
	for i := range v.NumField() {
		f := v.Field(i)
		name := v.Type().Field(i).Name
		switch f.Kind() {
		case reflect.Int64:
			if f.Type() == reflect.TypeOf(time.Duration(0)) {
				assert.Equal(t, 1234*time.Millisecond, time.Duration(f.Int()), name)
			} else {
				assert.Equal(t, int64(7), f.Int(), name)
			}
		case reflect.Int:
			assert.Equal(t, int64(7), f.Int(), name)
		default:
			require.Failf(t, "a field has no flag type", "field %s of kind %v", name, f.Kind())
		}
	}
}

func TestParseSize_UnitsAndErrorsNameTheValue(t *testing.T) {
	for in, want := range map[string]int64{"4096": 4096, "64KiB": 64 << 10, "2MiB": 2 << 20, "1 GiB": 1 << 30, "3MB": 3 << 20, "10K": 10 << 10, "512B": 512} {
		got, err := parseSize(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	for _, in := range []string{"", "0", "-1", "2XB", "MiB", "99999999999GiB"} {
		_, err := parseSize(in)
		require.Error(t, err, in)
		assert.Contains(t, err.Error(), in)
	}
	assert.Equal(t, "2MiB", formatSize(2<<20))
	assert.Equal(t, "256", formatSize(256))
}
