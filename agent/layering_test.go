package agent_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// An agent binary links the SDK and what the SDK imports. The policy
// engine, the file watcher of its live reload, the configuration store's
// database and the platform's metrics belong to the platform: the SDK
// talks to them over the wire and must not link them. go list -deps,
// the go tool's own account of what the package links, says so.
func TestAgent_LinksNeitherThePolicyEngineNorADatabase(t *testing.T) {
	goTool, err := exec.LookPath("go") // go test puts its own GOROOT/bin first in PATH
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("the go tool is not in PATH (%v); CI is set, so this test may not be skipped", err)
		}
		t.Skipf("the go tool is not in PATH: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goTool, "list", "-deps", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, ".")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "go list -deps: %s", stderr.String())

	// imports maps each package the agent links to the packages it imports.
	imports := map[string][]string{}
	for line := range strings.Lines(strings.TrimSpace(string(out))) {
		fields := strings.Fields(line)
		imports[fields[0]] = fields[1:]
	}
	require.Contains(t, imports, "github.com/capbus/capbus/agent", "go list listed the SDK itself")
	require.Contains(t, imports, "github.com/capbus/capbus/configstore", "the SDK links the configuration data model")
	require.Contains(t, imports, "github.com/capbus/capbus/auth/curve", "the SDK links CURVE")

	forbidden := []struct {
		path        string
		subpackages bool
		what        string
	}{
		{"go.etcd.io/bbolt", true, "the configuration store's database"},
		{"github.com/capbus/capbus/configstore/configdb", true, "the configuration store on disk"},
		{"github.com/fsnotify/fsnotify", true, "the file watcher of auth.json's live reload"},
		{"github.com/capbus/capbus/auth", false, "the policy engine"},
		{"github.com/capbus/capbus/platform", true, "the platform"},
		{"github.com/prometheus", true, "the platform's metrics"},
	}
	for _, f := range forbidden {
		var linked []string
		for pkg := range imports {
			if pkg == f.path || f.subpackages && strings.HasPrefix(pkg, f.path+"/") {
				linked = append(linked, pkg+" (imported by "+strings.Join(importers(imports, pkg), ", ")+")")
			}
		}
		slices.Sort(linked)
		assert.Empty(t, linked, "the agent SDK links %s: %s", f.what, f.path)
	}
}

// importers returns, sorted, the packages of imports that import pkg.
func importers(imports map[string][]string, pkg string) []string {
	var out []string
	for p, deps := range imports {
		if slices.Contains(deps, pkg) {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}
