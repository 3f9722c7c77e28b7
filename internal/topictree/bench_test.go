package topictree

import (
	"fmt"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/capbus/capbus/internal/vip"
)

// conn stands for the platform's *peer.
type conn struct{ id int }

// benchTopic matches, in every population of benchSubs, six subscribers:
// "devices/4/temp", two "devices/+/temp" and three "#".
const benchTopic = "devices/4/temp"

// benchSubs returns n subscriptions, one subscriber each: three "#", two
// "devices/+/temp", and then alternately "devices/<i>/temp" and
// "site/+/<i>/#".
func benchSubs(n int) map[string][]*conn {
	subs := make(map[string][]*conn)
	add := func(p string) { subs[p] = append(subs[p], &conn{id: len(subs)}) }
	for range 3 {
		add("#")
	}
	for range 2 {
		add("devices/+/temp")
	}
	for i := 0; i < n-5; i++ {
		if i%2 == 0 {
			add("devices/" + strconv.Itoa(i) + "/temp")
		} else {
			add("site/+/" + strconv.Itoa(i) + "/#")
		}
	}
	return subs
}

func benchIndex(subs map[string][]*conn) *Index[*conn] {
	x := New[*conn]()
	for p, cs := range subs {
		for _, c := range cs {
			x.Add(p, c)
		}
	}
	return x
}

var sizes = []int{10, 32000}

func BenchmarkIndex_Match(b *testing.B) {
	for _, n := range sizes {
		b.Run(fmt.Sprintf("subs=%d", n), func(b *testing.B) {
			x := benchIndex(benchSubs(n))
			require.Equal(b, n, x.Len(), "subscriptions")
			delivered := 0
			fn := func(*conn) { delivered++ }
			x.Match(benchTopic, fn)
			require.Equal(b, 6, delivered, "delivered")
			b.ReportAllocs()
			for b.Loop() {
				x.Match(benchTopic, fn)
			}
		})
	}
}

// BenchmarkIndex_MatchParallel runs Match on every CPU at once.
func BenchmarkIndex_MatchParallel(b *testing.B) {
	x := benchIndex(benchSubs(32000))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		delivered := 0
		for pb.Next() {
			x.Match(benchTopic, func(*conn) { delivered++ })
		}
	})
}

func BenchmarkIndex_FanOut100(b *testing.B) {
	x := New[*conn]()
	for i := range 100 {
		x.Add("devices/boiler/temp", &conn{id: i})
	}
	delivered := 0
	fn := func(*conn) { delivered++ }
	b.ReportAllocs()
	for b.Loop() {
		x.Match("devices/boiler/temp", fn)
	}
	require.Equal(b, 100*b.N, delivered, "delivered")
}

// BenchmarkLinearScan is the platform's approach before Index: every
// pattern through vip.MatchTopic, subscribers deduplicated in a slice.
func BenchmarkLinearScan(b *testing.B) {
	for _, n := range sizes {
		b.Run(fmt.Sprintf("subs=%d", n), func(b *testing.B) {
			subs := make(map[string]map[*conn]struct{})
			for p, cs := range benchSubs(n) {
				subs[p] = make(map[*conn]struct{})
				for _, c := range cs {
					subs[p][c] = struct{}{}
				}
			}
			delivered := 0
			match := func(topic string) {
				var sent []*conn
				for pattern, set := range subs {
					if !vip.MatchTopic(pattern, topic) {
						continue
					}
				next:
					for c := range set {
						for _, s := range sent {
							if s == c {
								continue next
							}
						}
						sent = append(sent, c)
						delivered++
					}
				}
			}
			match(benchTopic)
			require.Equal(b, 6, delivered, "delivered")
			b.ReportAllocs()
			for b.Loop() {
				match(benchTopic)
			}
		})
	}
}
