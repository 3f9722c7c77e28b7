// Package admintest drives the capbus admin console in a real headless
// Chromium, for tests: start a browser, log in, read a cell of the
// permission matrix, click its grant button, take a screenshot.
//
//	ctx := admintest.NewBrowser(t) // skips without chromium, unless CI is set
//	require.NoError(t, admintest.Login(ctx, consoleURL, "ops", token))
//	cell, err := admintest.ReadCell(ctx, "bobby", "weather.temperature")
//	require.NoError(t, admintest.ClickGrant(ctx, "bobby", "weather.temperature", "can_read_temp"))
//	admintest.Screenshot(ctx, t, "console.png")
package admintest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Timeout bounds everything a browser from NewBrowser does, start to end
// (less if the test's own deadline is sooner).
const Timeout = 60 * time.Second

// ChromiumPath is where Debian's chromium package puts the browser.
// NewBrowser looks there first, then for "chromium" on the PATH.
const ChromiumPath = "/usr/bin/chromium"

// ArtifactsEnv names the environment variable of the directory where
// Screenshot writes its files (CI keeps them); without it, they go to a
// temporary directory of the test.
const ArtifactsEnv = "CAPBUS_TEST_ARTIFACTS"

// ErrNoChromium is returned by FindChromium when no browser is installed.
var ErrNoChromium = errors.New("admintest: chromium not found")

// FindChromium returns the path of the Chromium binary.
func FindChromium() (string, error) {
	if fi, err := os.Stat(ChromiumPath); err == nil && !fi.IsDir() {
		return ChromiumPath, nil
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("%w: no %s and no chromium on the PATH (Debian: apt-get install chromium)", ErrNoChromium, ChromiumPath)
}

// NewBrowser starts a headless Chromium with a fresh profile in
// t.TempDir() and returns a context for chromedp actions in its tab. The
// context ends after Timeout; the browser is stopped when the test ends,
// and its output is logged if the test failed.
//
// Without Chromium the test is skipped, unless the environment variable CI
// is set: then it fails, so that CI never silently skips the browser tests.
func NewBrowser(t testing.TB) context.Context {
	t.Helper()
	path := requireChromium(t, FindChromium)
	out := &lockedBuffer{}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox, // tests run as root in CI containers
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
		chromedp.CombinedOutput(out),
	)
	timeout := Timeout
	if d, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if dl, ok := d.Deadline(); ok {
			timeout = min(timeout, time.Until(dl)-time.Second)
		}
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTimeout := context.WithTimeout(allocCtx, timeout)
	ctx, cancelTab := chromedp.NewContext(ctx)
	t.Cleanup(func() {
		cancelTab()
		cancelTimeout()
		cancelAlloc() // waits for the browser to exit, before TempDir is removed
		if t.Failed() {
			t.Logf("chromium output:\n%s", out.String())
		}
	})
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("admintest: starting %s: %v\n%s", path, err, out.String())
	}
	return ctx
}

// requireChromium returns the browser's path from find, or skips the test
// when there is none, or fails it when the environment variable CI is set.
func requireChromium(t testing.TB, find func() (string, error)) string {
	t.Helper()
	path, err := find()
	if err != nil {
		if os.Getenv("CI") == "" {
			t.Skipf("%v; the browser tests run where it is installed (and must, when CI is set)", err)
		}
		t.Fatalf("%v; CI is set, so the browser tests may not be skipped", err)
	}
	return path
}

// Login opens the console at url in the browser of ctx, fills the login
// form with the operator's name and the access token and submits it. It
// returns nil once the overview page shows, else an error with the page's
// message.
func Login(ctx context.Context, url, name, token string) error {
	if err := chromedp.Do(ctx,
		chromedp.Navigate(url),
		chromedp.WaitVisible(chromedp.ID("login")),
		chromedp.SendKeys(chromedp.ID("name"), name),
		chromedp.SendKeys(chromedp.ID("token"), token),
	); err != nil {
		return fmt.Errorf("admintest: login form at %s: %w", url, err)
	}
	resp, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.ID("login-submit")))
	if err != nil {
		return fmt.Errorf("admintest: submitting the login form: %w", err)
	}
	if resp.Status != http.StatusOK {
		return fmt.Errorf("admintest: login refused: %d %s", resp.Status, pageError(ctx))
	}
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.ID("operator"))); err != nil {
		return fmt.Errorf("admintest: no overview page after login: %w", err)
	}
	return nil
}

// Cell is a cell of the permission matrix as the page shows it.
type Cell struct {
	// State is "allowed", "denied", "conditional" or "unknown".
	State string
	// Allowed is the cell's data-allowed.
	Allowed bool
	// Missing is what the cell lists as missing (empty when allowed).
	Missing []string
	// Grants are the capabilities the cell has a grant button for.
	Grants []string
}

// CellSelector returns the CSS selector of the matrix cell of user and
// target ("agent.method").
func CellSelector(user, target string) string {
	return fmt.Sprintf(`td.cell[data-user=%s][data-target=%s]`, cssString(user), cssString(target))
}

// ReadCell reads the matrix cell of user and target on the current page.
func ReadCell(ctx context.Context, user, target string) (Cell, error) {
	sel := CellSelector(user, target)
	attrs, err := chromedp.Run(ctx, chromedp.Attributes(chromedp.CSS(sel)))
	if err != nil {
		return Cell{}, fmt.Errorf("admintest: cell %s: %w", sel, err)
	}
	c := Cell{State: attrs["data-state"], Allowed: attrs["data-allowed"] == "true"}
	missing, err := chromedp.Run(ctx, chromedp.Nodes(chromedp.CSSAll(sel+" .missing"), chromedp.AtLeast(0)))
	if err != nil {
		return Cell{}, fmt.Errorf("admintest: cell %s: %w", sel, err)
	}
	for _, n := range missing {
		c.Missing = append(c.Missing, strings.Fields(n.AttributeValue("data-missing"))...)
	}
	buttons, err := chromedp.Run(ctx, chromedp.Nodes(chromedp.CSSAll(sel+" button.grant-button"), chromedp.AtLeast(0)))
	if err != nil {
		return Cell{}, fmt.Errorf("admintest: cell %s: %w", sel, err)
	}
	for _, n := range buttons {
		c.Grants = append(c.Grants, n.AttributeValue("data-capability"))
	}
	return c, nil
}

// ClickGrant clicks the button of the matrix cell of user and target that
// grants capability, and waits for the page that follows. It returns an
// error if that page is not the overview with a success message (the
// page's error message is in the error).
func ClickGrant(ctx context.Context, user, target, capability string) error {
	sel := CellSelector(user, target) + " button.grant-button[data-capability=" + cssString(capability) + "]"
	resp, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(sel)))
	if err != nil {
		return fmt.Errorf("admintest: clicking %s: %w", sel, err)
	}
	if resp.Status != http.StatusOK {
		return fmt.Errorf("admintest: granting %s to %s: %d %s", capability, user, resp.Status, pageError(ctx))
	}
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.ID("flash"))); err != nil {
		return fmt.Errorf("admintest: no success message after granting %s to %s: %w", capability, user, err)
	}
	return nil
}

// Screenshot takes a full-page PNG screenshot of the current page, writes
// it as name in the directory named by $CAPBUS_TEST_ARTIFACTS (or in a
// temporary directory of the test), logs and returns the file's path and
// the image.
func Screenshot(ctx context.Context, t testing.TB, name string) (string, []byte) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("admintest: screenshot: %v", err)
	}
	dir := os.Getenv(ArtifactsEnv)
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("admintest: artifacts directory: %v", err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatalf("admintest: screenshot: %v", err)
	}
	t.Logf("screenshot: %s", path)
	return path, png
}

// pageError returns the text of the page's error message, if any.
func pageError(ctx context.Context) string {
	nodes, err := chromedp.Run(ctx, chromedp.Nodes(chromedp.CSSAll("#error"), chromedp.AtLeast(0)))
	if err != nil || len(nodes) == 0 {
		return ""
	}
	text, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("error")))
	if err != nil {
		return ""
	}
	return text
}

// cssString quotes s as a CSS string.
func cssString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, "\\%x ", r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// lockedBuffer collects the browser's output, written by another
// goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
