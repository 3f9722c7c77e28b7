package admin_test

import (
	"bytes"
	"image/png"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/capbus/capbus/platform/admin/admintest"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// updateScreenshotEnv names the environment variable that makes
// TestConsole_InChromium_GrantFromTheMatrixTurnsTheCellAllowed refresh the
// committed docs/console.png:
//
//	CAPBUS_UPDATE_SCREENSHOT=1 go test -run InChromium ./platform/admin
const updateScreenshotEnv = "CAPBUS_UPDATE_SCREENSHOT"

func TestConsole_InChromium_GrantFromTheMatrixTurnsTheCellAllowed(t *testing.T) {
	fake := newFake(time.Now())
	c := newConsole(t, fake)
	ctx := admintest.NewBrowser(t)

	require.NoError(t, admintest.Login(ctx, c.ts.URL+"/", "ops", testToken))
	cell, err := admintest.ReadCell(ctx, "bobby", "weather.temperature")
	require.NoError(t, err)
	assert.Equal(t, admintest.Cell{State: "denied", Missing: []string{"can_read_temp"}, Grants: []string{"can_read_temp"}}, cell)
	visible, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(admintest.CellSelector("bobby", "weather.temperature")+" .missing")))
	require.NoError(t, err)
	assert.Equal(t, "missing: can_read_temp", visible, "the missing capability is shown, not only in an attribute")

	require.NoError(t, admintest.ClickGrant(ctx, "bobby", "weather.temperature", "can_read_temp"))
	cell, err = admintest.ReadCell(ctx, "bobby", "weather.temperature")
	require.NoError(t, err)
	assert.Equal(t, admintest.Cell{State: "allowed", Allowed: true}, cell)
	flash, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("flash")))
	require.NoError(t, err)
	assert.Equal(t, "Granted can_read_temp to bobby.", flash)
	location, err := chromedp.Run(ctx, chromedp.Location())
	require.NoError(t, err)
	assert.Equal(t, c.ts.URL+"/", location, "POST-redirect-GET: a reload does not grant again")
	assert.Equal(t, []fakeEdit{{Op: "grant", By: "console:ops from 127.0.0.1", User: "bobby", Capability: "can_read_temp"}},
		fake.recordedEdits())

	// bobby's forecast still lacks can_read_weather_data.
	cell, err = admintest.ReadCell(ctx, "bobby", "weather.forecast")
	require.NoError(t, err)
	assert.Equal(t, admintest.Cell{State: "denied", Missing: []string{"can_read_weather_data"}, Grants: []string{"can_read_weather_data"}}, cell)

	// Open one explanation, so that the screenshot shows what "why" holds.
	require.NoError(t, chromedp.Do(ctx, chromedp.Click(chromedp.CSS(admintest.CellSelector("alice", "weather.forecast")+" summary"))))
	_, shot := admintest.Screenshot(ctx, t, "console.png")
	cfg, err := png.DecodeConfig(bytes.NewReader(shot))
	require.NoError(t, err)
	assert.Equal(t, 1280, cfg.Width)
	assert.Greater(t, cfg.Height, 900, "a full-page screenshot is taller than the window")
	if os.Getenv(updateScreenshotEnv) != "" {
		path := filepath.Join("..", "..", "docs", "console.png")
		require.NoError(t, os.WriteFile(path, shot, 0o644))
		t.Logf("updated %s", path)
	}
}

func TestConsole_InChromium_WrongTokenIsRefusedOnTheLoginPage(t *testing.T) {
	c := newConsole(t, newFake(time.Now()))
	ctx := admintest.NewBrowser(t)
	err := admintest.Login(ctx, c.ts.URL+"/", "mallory", "not-the-token-0000000000")
	require.Error(t, err)
	assert.ErrorContains(t, err, "401 Wrong access token.")
}

func TestConsole_InChromium_OneClickURLLogsInAndLeavesNoTokenInTheAddress(t *testing.T) {
	c := newConsole(t, newFake(time.Now()))
	ctx := admintest.NewBrowser(t)
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(c.ts.URL+"/?name=ops&token="+url.QueryEscape(testToken)),
		chromedp.WaitVisible(chromedp.ID("operator")),
	))
	location, err := chromedp.Run(ctx, chromedp.Location())
	require.NoError(t, err)
	assert.Equal(t, c.ts.URL+"/", location)
}

func TestConsole_InChromium_AFormOnAnotherSiteCannotGrant(t *testing.T) {
	fake := newFake(time.Now())
	c := newConsole(t, fake)
	// The attacker's page, on another origin (localhost is another site
	// than 127.0.0.1), posts a grant form to the console.
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(`<!doctype html><form method="post" action="` + c.ts.URL + `/grant">
<input type="hidden" name="user" value="bobby"><input type="hidden" name="capability" value="can_read_temp">
<input type="hidden" name="csrf" value="guess"><button id="go" type="submit">win a prize</button></form>`))
	}))
	t.Cleanup(evil.Close)
	evilURL := "http://localhost:" + strconv.Itoa(evil.Listener.Addr().(*net.TCPAddr).Port) + "/"

	ctx := admintest.NewBrowser(t)
	require.NoError(t, admintest.Login(ctx, c.ts.URL+"/", "ops", testToken))
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(evilURL), chromedp.WaitVisible(chromedp.ID("go"))))
	resp, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.ID("go")))
	require.NoError(t, err)
	assert.Equal(t, int64(http.StatusForbidden), resp.Status)
	assert.Empty(t, fake.recordedEdits(), "the backend was not called")
}
