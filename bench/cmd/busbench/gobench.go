package main

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
)

// goBenches are the in-package benchmarks that tell allocations per call.
var goBenches = []struct{ pkg, pattern string }{
	{"./platform", "^BenchmarkRouter_AuthorizeAndRouteCall$|^BenchmarkPlatform_CallRoundTrip$"},
	{"./auth", "^BenchmarkDecide$"},
	{"./agent", "^BenchmarkCall_SDKOverhead$"},
}

func goBench(ctx context.Context, repo string) ([]string, error) {
	goBin, err := goTool()
	if err != nil {
		return nil, err
	}
	var lines []string
	for _, b := range goBenches {
		cmd := exec.CommandContext(ctx, goBin, "test", "-run", "^$", "-bench", b.pattern, "-benchmem", "-count", "1", b.pkg)
		cmd.Dir = repo
		out, err := cmd.CombinedOutput()
		if err != nil {
			return lines, fmt.Errorf("%s: %v: %s", b.pkg, err, lastLines(out, 10))
		}
		for _, l := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(l, "Benchmark") {
				lines = append(lines, strings.Join(strings.Fields(l), " "))
			}
		}
	}
	return lines, nil
}

func lastLines(b []byte, n int) string {
	l := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

func benchNS(lines []string, name string) (float64, bool) {
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) < 4 || (f[0] != name && !strings.HasPrefix(f[0], name+"-")) {
			continue
		}
		for i := 1; i+1 < len(f); i++ {
			if f[i+1] == "ns/op" {
				v, err := strconv.ParseFloat(f[i], 64)
				return v, err == nil
			}
		}
	}
	return 0, false
}
