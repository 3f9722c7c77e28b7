package auth_test

import (
	"encoding/binary"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/capbus/capbus/auth"
	"github.com/capbus/capbus/keys"
	"github.com/capbus/capbus/rpc"
)

// genPolicy writes an auth.json with users allow entries, 100 roles of 5
// capabilities each (out of 300), 20 groups of 5 roles each; every user has
// 2 roles, 1 group and 2 direct capabilities.
func genPolicy(users int) []byte {
	var b strings.Builder
	b.WriteString("{\n  \"version\": {\"major\": 1, \"minor\": 4},\n  \"roles\": {\n")
	for r := 0; r < 100; r++ {
		fmt.Fprintf(&b, "    \"role%d\": [", r)
		for c := 0; c < 5; c++ {
			if c > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "\"cap%d\"", (r*7+c*31)%300)
		}
		b.WriteString("]")
		if r < 99 {
			b.WriteString(",")
		}
		b.WriteString("\n")
	}
	b.WriteString("  },\n  \"groups\": {\n")
	for g := 0; g < 20; g++ {
		fmt.Fprintf(&b, "    \"group%d\": [\"role%d\", \"role%d\", \"role%d\", \"role%d\", \"role%d\"]", g, g, g+20, g+40, g+60, g+80)
		if g < 19 {
			b.WriteString(",")
		}
		b.WriteString("\n")
	}
	b.WriteString("  },\n  \"allow\": [\n")
	for u := 0; u < users; u++ {
		var k keys.Key
		binary.BigEndian.PutUint64(k[:], uint64(u)+1)
		fmt.Fprintf(&b, "    {\"user_id\": \"user%d\", \"credentials\": %q, \"roles\": [\"role%d\", \"role%d\"], \"groups\": [\"group%d\"], \"capabilities\": [\"cap%d\", \"cap%d\"]}",
			u, k.Base64URL(), u%100, (u+50)%100, u%20, u%300, (u+150)%300)
		if u < users-1 {
			b.WriteString(",")
		}
		b.WriteString("\n")
	}
	b.WriteString("  ]\n}\n")
	return []byte(b.String())
}

type decisionFixture struct {
	p *auth.Policy
	s *auth.Subject
	r *auth.Requirement
}

func newDecisionFixture(tb testing.TB, users int) decisionFixture {
	p, err := auth.Parse("bench.json", genPolicy(users))
	require.NoError(tb, err)
	u := users / 2
	s, err := p.Subject(rpc.Principal{UserID: fmt.Sprintf("user%d", u), Identity: "agent"})
	require.NoError(tb, err)
	// Require a direct capability and one from the user's first role.
	r := p.Requirement(rpc.Principal{UserID: "user0", Identity: "callee"}, "method",
		auth.Declared{Capabilities: []string{fmt.Sprintf("cap%d", u%300), fmt.Sprintf("cap%d", ((u%100)*7)%300)}})
	return decisionFixture{p, s, r}
}

func TestDecide_AllowedPathDoesNotAllocate(t *testing.T) {
	f := newDecisionFixture(t, 1000)
	require.True(t, f.p.Decide(f.s, f.r, nil).Allowed)
	allocs := testing.AllocsPerRun(1000, func() {
		require.True(t, f.p.Decide(f.s, f.r, nil).Allowed, "denied")
	})
	require.Zero(t, allocs)

	ex := mustLoad(t, "../auth.json.example")
	w := subject(t, ex, "weather", "weather")
	require.True(t, ex.DecideTopic(w, auth.Publish, "weather/paris/temperature").Allowed)
	allocs = testing.AllocsPerRun(1000, func() { ex.DecideTopic(w, auth.Publish, "weather/paris/temperature") })
	require.Zero(t, allocs, "topic decisions do not allocate either")
}

func BenchmarkDecide(b *testing.B) {
	for _, users := range []int{10, 1000, 10000} {
		b.Run(fmt.Sprintf("users=%d", users), func(b *testing.B) {
			f := newDecisionFixture(b, users)
			require.True(b, f.p.Decide(f.s, f.r, nil).Allowed, "fixture must be on the allowed path")
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				// Not require.True in timed loops: it calls b.Helper every time.
				if !f.p.Decide(f.s, f.r, nil).Allowed {
					b.Fatal("denied")
				}
			}
		})
	}
}

func BenchmarkDecideTopic(b *testing.B) {
	p := mustLoad(b, "../auth.json.example")
	s := subject(b, p, "weather", "weather")
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if !p.DecideTopic(s, auth.Publish, "weather/paris/temperature").Allowed {
			b.Fatal("denied")
		}
	}
}

func BenchmarkParse10000Users(b *testing.B) {
	data := genPolicy(10000)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := auth.Parse("bench.json", data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSubject(b *testing.B) {
	f := newDecisionFixture(b, 10000)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := f.p.Subject(rpc.Principal{UserID: "user42", Identity: "x"}); err != nil {
			b.Fatal(err)
		}
	}
}
