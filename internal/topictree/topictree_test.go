package topictree

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/capbus/capbus/internal/vip"
)

// calls returns how many times Match called fn for each subscriber.
func calls[S comparable](x *Index[S], topic string) map[S]int {
	got := make(map[S]int)
	x.Match(topic, func(s S) { got[s]++ })
	return got
}

func TestIndex_MatchAgreesWithMatchTopicOnTheTable(t *testing.T) {
	for _, c := range []struct {
		pattern, topic string
		want           bool
	}{
		{"devices/#", "devices", true},
		{"devices/#", "devices/a/b", true},
		{"devices/#", "devicesX", false},
		{"devices/#", "devicesX/a", false},
		{"devices/+/temp", "devices/a/temp", true},
		{"devices/+/temp", "devices/a/b/temp", false},
		{"devices/+", "devices", false},
		{"#", "a/b", true},
		{"#", "a", true},
		{"+", "a", true},
		{"+/+", "a", false},
		{"a/+", "a/b", true},
		{"a/+", "a", false},
		{"a/+", "a/b/c", false},
		{"a/+/c", "a/b/c", true},
		{"a", "a/b", false},
		{"a/b", "a", false},
		{"a/b", "a/b", true},
		{"a/b", "a/b/c", false},
		{"+/#", "a", true},
		{"+/+/#", "a/b", true},
		{"a/+/#", "a", false},
		// Empty segments and trailing slashes, as vip.MatchTopic has them.
		{"a//b", "a//b", true},
		{"a/+/b", "a//b", true},
		{"+/b", "/b", true},
		{"a/", "a", true},   // a pattern's trailing "/" is ignored
		{"a/", "a/", false}, // ... so "a/" is "a"
		{"a//", "a/", true},
		{"a/+", "a/", false}, // "+" does not match the empty last segment
		{"a/#", "a/", true},
		{"+/+/#", "a/", false},
		{"/", "a", false},
		{"/", "/", false},
		{"//", "/", true},
		{"+", "/", false},
		{"+/", "a", true},
	} {
		t.Run(c.pattern+" "+c.topic, func(t *testing.T) {
			require.Equal(t, c.want, vip.MatchTopic(c.pattern, c.topic), "the table disagrees with vip.MatchTopic")
			x := New[int]()
			require.True(t, x.Add(c.pattern, 1))
			if c.want {
				assert.Equal(t, map[int]int{1: 1}, calls(x, c.topic))
			} else {
				assert.Empty(t, calls(x, c.topic))
			}
		})
	}
}

// checkAgainstMatchTopic subscribes subscriber i%3 to patterns[i], checks
// that Match on topic calls exactly the subscribers with a pattern that
// vip.MatchTopic matches, each once, and again after every other
// subscription is removed.
func checkAgainstMatchTopic(t *testing.T, patterns []string, topic string) {
	t.Helper()
	x := New[int]()
	type sub struct {
		pattern string
		s       int
	}
	subs := make(map[sub]bool)
	for i, p := range patterns {
		s := sub{p, i % 3}
		require.Equal(t, !subs[s], x.Add(p, s.s), "Add(%q, %d)", p, s.s)
		subs[s] = true
	}
	check := func() {
		t.Helper()
		want := make(map[int]int)
		for s := range subs {
			if vip.MatchTopic(s.pattern, topic) {
				want[s.s] = 1
			}
		}
		require.Equal(t, want, calls(x, topic), "patterns %q, topic %q", patterns, topic)
		require.Equal(t, len(subs), x.Len())
	}
	check()
	for i, p := range patterns {
		if i%2 == 0 {
			s := sub{p, i % 3}
			require.Equal(t, subs[s], x.Remove(p, s.s), "Remove(%q, %d)", p, s.s)
			delete(subs, s)
		}
	}
	check()
}

func FuzzIndex_MatchesLikeMatchTopic(f *testing.F) {
	for _, seed := range [][2]string{
		{"devices/#\ndevices/+/temp\n#", "devices/a/temp"},
		{"a/+\na/#\na//\na/", "a/"},
		{"+/+/#\n+/b\n/", "/b"},
		{"site/+/7/#\nsite/x/7\n+", "site/x/7/y/z"},
		{"a//b\na/+/b\n+/+/+", "a//b"},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, patterns, topic string) {
		if vip.CheckTopic(topic, false) != "" {
			return
		}
		var ps []string
		for _, p := range strings.Split(patterns, "\n") {
			if vip.CheckTopic(p, true) == "" {
				ps = append(ps, p)
			}
		}
		checkAgainstMatchTopic(t, ps, topic)
	})
}

// randomTopic joins 1 to 4 segments drawn from segs.
func randomTopic(r *rand.Rand, segs []string) string {
	parts := make([]string, 1+r.IntN(4))
	for i := range parts {
		parts[i] = segs[r.IntN(len(segs))]
	}
	return strings.Join(parts, "/")
}

func TestIndex_MatchesLikeMatchTopicOnRandomPatterns(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	patternSegs := []string{"a", "b", "ab", "", "+", "+", "#", "#"}
	topicSegs := []string{"a", "b", "ab", ""}
	for range 3000 {
		var ps []string
		for len(ps) < 1+r.IntN(12) {
			if p := randomTopic(r, patternSegs); vip.CheckTopic(p, true) == "" {
				ps = append(ps, p)
			}
		}
		topic := randomTopic(r, topicSegs)
		checkAgainstMatchTopic(t, ps, topic)
	}
}

func TestIndex_MatchCallsEachSubscriberOnceWhenSeveralPatternsMatch(t *testing.T) {
	x := New[int]()
	// More subscribers than Match deduplicates by scanning, each with
	// three matching patterns on three nodes.
	for s := range 40 {
		x.Add("devices/#", s)
		x.Add("devices/+/temp", s)
		x.Add("devices/boiler/temp", s)
	}
	x.Add("devices/boiler/temp", 99)
	got := calls(x, "devices/boiler/temp")
	require.Len(t, got, 41)
	for s, n := range got {
		assert.Equal(t, 1, n, "subscriber %d", s)
	}
	assert.Len(t, calls(x, "devices/pump/temp"), 40)
}

func TestIndex_AddIsIdempotentPerPatternAndSubscriber(t *testing.T) {
	x := New[string]()
	assert.True(t, x.Add("a/+", "p1"))
	assert.False(t, x.Add("a/+", "p1"))
	assert.True(t, x.Add("a/+", "p2"))
	assert.True(t, x.Add("a/#", "p1"))
	assert.Equal(t, 3, x.Len())
	assert.Equal(t, map[string]int{"p1": 1, "p2": 1}, calls(x, "a/b"))
}

func TestIndex_TrailingSlashPatternIsASubscriptionOfItsOwn(t *testing.T) {
	x := New[int]()
	require.True(t, x.Add("a", 1))
	require.True(t, x.Add("a/", 1), `"a/" matches as "a" but is another pattern`)
	require.Equal(t, 2, x.Len())
	assert.Equal(t, map[int]int{1: 1}, calls(x, "a"))

	require.True(t, x.Remove("a/", 1))
	assert.Equal(t, map[int]int{1: 1}, calls(x, "a"), `removing "a/" keeps "a"`)
	require.False(t, x.Remove("a/", 1))
	require.True(t, x.Remove("a", 1))
	assert.Empty(t, calls(x, "a"))
	assert.Zero(t, x.Len())
}

func TestIndex_AddRefusesPatternsCheckTopicRefuses(t *testing.T) {
	x := New[int]()
	for _, p := range []string{"", "a/#/b", "a+/b", "a/b#", strings.Repeat("a", vip.MaxTopic+1)} {
		assert.False(t, x.Add(p, 1), "%.20q", p)
	}
	assert.Zero(t, x.Len())
	assert.True(t, x.root.empty())
}

func TestIndex_RemoveOfAnAbsentSubscriptionReportsFalse(t *testing.T) {
	x := New[int]()
	x.Add("a/b", 1)
	assert.False(t, x.Remove("a/b", 2), "another subscriber")
	assert.False(t, x.Remove("a", 1), "a prefix of the pattern")
	assert.False(t, x.Remove("a/b/c", 1), "a longer pattern")
	assert.False(t, x.Remove("a/#/b", 1), "an invalid pattern")
	assert.Equal(t, 1, x.Len())
}

func TestIndex_RemovePrunesNodesLeftEmpty(t *testing.T) {
	x := New[int]()
	x.Add("a/b/c", 1)
	x.Add("a/+/#", 1)
	x.Add("a/b", 2)
	require.True(t, x.Remove("a/b/c", 1))
	a := x.root.children["a"]
	require.NotNil(t, a)
	assert.NotContains(t, a.children["b"].children, "c", "the leaf c is pruned")
	require.True(t, x.Remove("a/+/#", 1))
	assert.Nil(t, a.plus, `"+" and its "#" are pruned`)
	require.True(t, x.Remove("a/b", 2))
	assert.True(t, x.root.empty(), "nothing is left under the root")
}

func TestIndex_RemoveAllDropsTheGivenSubscriptionsOfOneSubscriber(t *testing.T) {
	x := New[int]()
	mine := []string{"a/#", "b/+", "c"}
	for _, p := range mine {
		x.Add(p, 1)
		x.Add(p, 2)
	}
	assert.Equal(t, 3, x.RemoveAll(1, append(mine, "not/subscribed")))
	assert.Equal(t, 3, x.Len())
	for _, topic := range []string{"a/x", "b/y", "c"} {
		assert.Equal(t, map[int]int{2: 1}, calls(x, topic), topic)
	}
}

func TestIndex_CrowdedPatternKeepsItsSubscribersAcrossRemovals(t *testing.T) {
	x := New[int]()
	const n = 50 // well above the size at which a node indexes its subscribers
	for s := range n {
		x.Add("t", s)
	}
	r := rand.New(rand.NewPCG(3, 4))
	left := make(map[int]int)
	for s := range n {
		left[s] = 1
	}
	for _, s := range r.Perm(n) {
		require.True(t, x.Remove("t", s))
		delete(left, s)
		require.Equal(t, left, calls(x, "t"))
		require.False(t, x.Remove("t", s))
	}
	assert.True(t, x.root.empty())
}

func TestIndex_FnMayCallBackIntoTheIndex(t *testing.T) {
	x := New[int]()
	x.Add("a/#", 1)
	x.Add("a/b", 2)
	done := make(chan struct{})
	go func() {
		defer close(done)
		x.Match("a/b", func(s int) {
			x.Remove("a/b", s)
			x.Add("a/c", s)
		})
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Match deadlocked when fn called Add and Remove")
	}
	assert.Equal(t, map[int]int{1: 1}, calls(x, "a/b"))
	assert.Equal(t, map[int]int{1: 1, 2: 1}, calls(x, "a/c"))
}

func TestIndex_ConcurrentMatchSeesStableSubscriptionsExactlyOnceWhileOthersChange(t *testing.T) {
	x := New[int]()
	x.Add("devices/#", 0)
	x.Add("devices/+/temp", 0)
	stop := make(chan struct{})
	var writers sync.WaitGroup
	for w := 1; w <= 2; w++ {
		writers.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				p := fmt.Sprintf("devices/%d/temp", i%64)
				s := w*1000 + i%64
				x.Add(p, s)
				x.Add("devices/#", s)
				x.Remove(p, s)
				x.Remove("devices/#", s)
			}
		})
	}
	const matchers = 4
	errs := make(chan error, matchers)
	var readers sync.WaitGroup
	for range matchers {
		readers.Go(func() {
			for i := range 2000 {
				n := 0
				x.Match(fmt.Sprintf("devices/%d/temp", i%64), func(s int) {
					if s == 0 {
						n++
					}
				})
				if n != 1 {
					errs <- fmt.Errorf("subscriber 0 delivered %d times", n)
					return
				}
			}
		})
	}
	readers.Wait()
	close(stop)
	writers.Wait()
	close(errs)
	for err := range errs {
		assert.NoError(t, err)
	}
	assert.Equal(t, 2, x.Len(), "the churn left only the stable subscriptions")
}
