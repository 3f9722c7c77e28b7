package vip

import "strings"

// CheckTopic reports why t is not a valid topic (wildcards false: what a
// peer publishes to) or subscription pattern (wildcards true), or "" when
// it is (docs/PROTOCOL.md section 4): 1 to MaxTopic bytes of "/"-separated
// segments; in a pattern "+" stands for one whole segment and "#", as the
// last segment only, for any number of them. The platform and the agent
// SDK both check with it, so that what one accepts the other does.
func CheckTopic(t string, wildcards bool) string {
	if t == "" || len(t) > MaxTopic {
		return "a topic has 1 to 1024 bytes"
	}
	for rest, more := t, true; more; {
		var seg string
		seg, rest, more = strings.Cut(rest, "/")
		switch {
		case seg == "+" || seg == "#":
			if !wildcards {
				return "a published topic has no wildcards"
			}
			if seg == "#" && more {
				return `"#" is allowed only as the last segment`
			}
		case strings.ContainsAny(seg, "+#"):
			return "wildcards must be whole segments"
		}
	}
	return ""
}

// MatchTopic reports whether topic matches pattern, segment by segment:
// "+" matches one segment, a final "#" zero or more. Both are as
// CheckTopic accepts them.
func MatchTopic(pattern, topic string) bool {
	for {
		var ps string
		ps, pattern, _ = strings.Cut(pattern, "/")
		if ps == "#" {
			return true
		}
		if topic == "" && ps != "" {
			return false
		}
		var ts string
		var more bool
		ts, topic, more = strings.Cut(topic, "/")
		if ps != "+" && ps != ts {
			return false
		}
		if pattern == "" {
			return !more
		}
		if !more {
			return pattern == "#" // the topic ended: only a final "#" matches
		}
	}
}
