package admin

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestAge_IsCoarse(t *testing.T) {
	for d, want := range map[time.Duration]string{
		-time.Second:                  "0s",
		42 * time.Second:              "42s",
		7*time.Minute + 2*time.Second: "7m",
		2*time.Hour + 14*time.Minute:  "2h14m",
		26 * time.Hour:                "26h0m",
		3*24*time.Hour + 4*time.Hour:  "3d4h",
	} {
		assert.Equal(t, want, age(d), "%v", d)
	}
}
