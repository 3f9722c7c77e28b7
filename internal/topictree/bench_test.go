package topictree

import (
	"fmt"
	"strconv"
	"testing"

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
			if x.Len() != n {
				b.Fatalf("%d subscriptions, want %d", x.Len(), n)
			}
			delivered := 0
			fn := func(*conn) { delivered++ }
			x.Match(benchTopic, fn)
			if delivered != 6 {
				b.Fatalf("delivered %d, want 6", delivered)
			}
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
	if delivered != 100*b.N {
		b.Fatalf("delivered %d, want %d", delivered, 100*b.N)
	}
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
			if delivered != 6 {
				b.Fatalf("delivered %d, want 6", delivered)
			}
			b.ReportAllocs()
			for b.Loop() {
				match(benchTopic)
			}
		})
	}
}
