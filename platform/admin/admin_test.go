package admin_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/capbus/capbus/platform/admin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const testToken = "test-token-0123456789-abcdefghij"

// console is an admin server on real TCP with the fake backend.
type console struct {
	t      *testing.T
	fake   *fakeBackend
	ts     *httptest.Server
	client *http.Client
}

func newConsole(t *testing.T, fake *fakeBackend, opts ...admin.Option) *console {
	t.Helper()
	srv, err := admin.New(fake, append([]admin.Option{admin.WithToken(testToken)}, opts...)...)
	require.NoError(t, err)
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	client := &http.Client{
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return &console{t: t, fake: fake, ts: ts, client: client}
}

// result is a response with its body read.
type result struct {
	Status int
	Header http.Header
	Body   string
	resp   *http.Response
}

func (r result) cookie(name string) *http.Cookie {
	for _, c := range r.resp.Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func (c *console) do(req *http.Request, cookie *http.Cookie, header map[string]string) result {
	c.t.Helper()
	if cookie != nil {
		req.AddCookie(cookie)
	}
	for k, v := range header {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := c.client.Do(req)
	require.NoError(c.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(c.t, err)
	return result{Status: resp.StatusCode, Header: resp.Header, Body: string(b), resp: resp}
}

func (c *console) get(path string, cookie *http.Cookie, header map[string]string) result {
	c.t.Helper()
	req, err := http.NewRequest(http.MethodGet, c.ts.URL+path, nil)
	require.NoError(c.t, err)
	return c.do(req, cookie, header)
}

func (c *console) post(path string, form url.Values, cookie *http.Cookie, header map[string]string) result {
	c.t.Helper()
	req, err := http.NewRequest(http.MethodPost, c.ts.URL+path, strings.NewReader(form.Encode()))
	require.NoError(c.t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return c.do(req, cookie, header)
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// login logs in through the form and returns the session cookie and the
// page's CSRF token.
func (c *console) login(name string) (*http.Cookie, string) {
	c.t.Helper()
	r := c.post("/login", url.Values{"name": {name}, "token": {testToken}}, nil, nil)
	require.Equal(c.t, http.StatusSeeOther, r.Status, r.Body)
	cookie := r.cookie("capbus_admin")
	require.NotNil(c.t, cookie)
	page := c.get("/", cookie, nil)
	require.Equal(c.t, http.StatusOK, page.Status, page.Body)
	m := csrfField.FindStringSubmatch(page.Body)
	require.NotNil(c.t, m, "no CSRF token on the overview page")
	return cookie, m[1]
}

func TestHealthz_AnswersOKWithoutLogin(t *testing.T) {
	c := newConsole(t, newFake(time.Now()))
	r := c.get("/healthz", nil, nil)
	assert.Equal(t, http.StatusOK, r.Status)
	assert.Equal(t, "ok\n", r.Body)
}

func TestReadyz_ReflectsTheBackend(t *testing.T) {
	fake := newFake(time.Now())
	c := newConsole(t, fake)

	r := c.get("/readyz", nil, nil)
	assert.Equal(t, http.StatusOK, r.Status)
	assert.Equal(t, "ready\n", r.Body)

	fake.setReadyErr(errors.New("platform: no policy: auth.json is missing"))
	r = c.get("/readyz", nil, nil)
	assert.Equal(t, http.StatusServiceUnavailable, r.Status)
	assert.Equal(t, "platform: no policy: auth.json is missing\n", r.Body)

	fake.setReadyErr(nil)
	assert.Equal(t, http.StatusOK, c.get("/readyz", nil, nil).Status)
}

func TestMetrics_PassesThroughTheGivenHandlerWithoutLogin(t *testing.T) {
	metrics := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		_, _ = io.WriteString(w, "capbus_peers 5\n")
	})
	c := newConsole(t, newFake(time.Now()), admin.WithMetrics(metrics))
	r := c.get("/metrics", nil, nil)
	assert.Equal(t, http.StatusOK, r.Status)
	assert.Equal(t, "capbus_peers 5\n", r.Body)
	assert.Equal(t, "text/plain; version=0.0.4", r.Header.Get("Content-Type"))
}

func TestMetrics_Is404WithoutAHandler(t *testing.T) {
	c := newConsole(t, newFake(time.Now()))
	assert.Equal(t, http.StatusNotFound, c.get("/metrics", nil, nil).Status)
}

func TestConsole_WithoutSessionShowsTheLoginFormAndNoState(t *testing.T) {
	c := newConsole(t, newFake(time.Now()))
	r := c.get("/", nil, nil)
	assert.Equal(t, http.StatusOK, r.Status)
	assert.Contains(t, r.Body, `<form id="login" method="post" action="login">`)
	assert.Contains(t, r.Body, `name="name"`)
	assert.Contains(t, r.Body, `name="token"`)
	assert.Contains(t, r.Body, "admin.token in the platform's home")
	assert.NotContains(t, r.Body, "bobby.dashboard", "the login page leaks the platform's state")

	// A session cookie the server does not know is no session.
	r = c.get("/", &http.Cookie{Name: "capbus_admin", Value: "forged"}, nil)
	assert.Contains(t, r.Body, `id="login"`)
	assert.NotContains(t, r.Body, "bobby.dashboard")
}

func TestConsole_PagesCarrySecurityHeaders(t *testing.T) {
	c := newConsole(t, newFake(time.Now()))
	cookie, _ := c.login("ops")
	for _, r := range []result{c.get("/", nil, nil), c.get("/", cookie, nil)} {
		assert.Equal(t, "default-src 'self'; script-src 'none'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
			r.Header.Get("Content-Security-Policy"))
		assert.Equal(t, "DENY", r.Header.Get("X-Frame-Options"))
		assert.Equal(t, "no-referrer", r.Header.Get("Referrer-Policy"))
		assert.Equal(t, "nosniff", r.Header.Get("X-Content-Type-Options"))
		assert.Equal(t, "no-store", r.Header.Get("Cache-Control"))
		assert.Equal(t, "text/html; charset=utf-8", r.Header.Get("Content-Type"))
		assert.NotContains(t, r.Body, "<script", "the console has no script")
		assert.NotContains(t, r.Body, "http://", "the console loads nothing from elsewhere")
		assert.NotContains(t, r.Body, "https://", "the console loads nothing from elsewhere")
	}
	css := c.get("/console.css", nil, nil)
	assert.Equal(t, http.StatusOK, css.Status)
	assert.Equal(t, "text/css; charset=utf-8", css.Header.Get("Content-Type"))
	assert.NotContains(t, css.Body, "@import")
	assert.NotContains(t, css.Body, "url(")
}

func TestLogin_RightTokenSetsAStrictHttpOnlySessionCookie(t *testing.T) {
	c := newConsole(t, newFake(time.Now()))
	r := c.post("/login", url.Values{"name": {"ops"}, "token": {testToken}}, nil, nil)
	require.Equal(t, http.StatusSeeOther, r.Status)
	assert.Equal(t, "./", r.Header.Get("Location"))
	cookie := r.cookie("capbus_admin")
	require.NotNil(t, cookie)
	assert.True(t, cookie.HttpOnly)
	assert.Equal(t, http.SameSiteStrictMode, cookie.SameSite)
	assert.Equal(t, "/", cookie.Path)
	assert.Equal(t, int((12 * time.Hour).Seconds()), cookie.MaxAge)
	assert.GreaterOrEqual(t, len(cookie.Value), 43, "session id of 32 random bytes")
	assert.NotContains(t, cookie.Value, testToken)

	page := c.get("/", cookie, nil)
	assert.Equal(t, http.StatusOK, page.Status)
	assert.Contains(t, page.Body, `<strong id="operator">ops</strong>`)
	assert.NotContains(t, page.Body, `id="login"`)

	// Each login is its own session.
	other := c.post("/login", url.Values{"name": {"ops"}, "token": {testToken}}, nil, nil).cookie("capbus_admin")
	require.NotNil(t, other)
	assert.NotEqual(t, cookie.Value, other.Value)
}

func TestLogin_WrongTokenIs401ThenRateLimitedPerAddress(t *testing.T) {
	fake := newFake(time.Now())
	c := newConsole(t, fake)
	wrong := url.Values{"name": {"mallory"}, "token": {"not-the-token-000000000"}}
	for i := 1; i < admin.FreeLoginFailures; i++ {
		r := c.post("/login", wrong, nil, nil)
		require.Equal(t, http.StatusUnauthorized, r.Status, "attempt %d", i)
		assert.Contains(t, r.Body, "Wrong access token.")
		assert.Contains(t, r.Body, `value="mallory"`, "the name typed is kept")
		assert.Nil(t, r.cookie("capbus_admin"))
	}
	r := c.post("/login", wrong, nil, nil)
	assert.Equal(t, http.StatusTooManyRequests, r.Status)
	assert.Equal(t, "30", r.Header.Get("Retry-After"))
	assert.Contains(t, r.Body, "Too many failed logins from your address: try again in 30s.")

	// While it waits, even the right token is refused from that address,
	// and ?token= is no way around it.
	r = c.post("/login", url.Values{"name": {"ops"}, "token": {testToken}}, nil, nil)
	assert.Equal(t, http.StatusTooManyRequests, r.Status)
	assert.Nil(t, r.cookie("capbus_admin"))
	r = c.get("/?token="+testToken, nil, nil)
	assert.Equal(t, http.StatusTooManyRequests, r.Status)
	assert.Nil(t, r.cookie("capbus_admin"))
}

func TestLogin_RateLimitDoesNotLockOutOtherAddresses(t *testing.T) {
	srv, err := admin.New(newFake(time.Now()), admin.WithToken(testToken))
	require.NoError(t, err)
	h := srv.Handler()
	post := func(remote, token string) int {
		req := httptest.NewRequest(http.MethodPost, "http://localhost/login",
			strings.NewReader(url.Values{"name": {"ops"}, "token": {token}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.RemoteAddr = remote
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		return w.Code
	}
	for range admin.FreeLoginFailures {
		post("192.0.2.1:1000", "wrong-token-000000000000")
	}
	assert.Equal(t, http.StatusTooManyRequests, post("192.0.2.1:1001", testToken))
	assert.Equal(t, http.StatusSeeOther, post("192.0.2.2:1000", testToken))
}

func TestLogin_NameIsRequired(t *testing.T) {
	c := newConsole(t, newFake(time.Now()))
	r := c.post("/login", url.Values{"name": {"  "}, "token": {testToken}}, nil, nil)
	assert.Equal(t, http.StatusBadRequest, r.Status)
	assert.Contains(t, r.Body, "The name is required.")
	assert.Nil(t, r.cookie("capbus_admin"))

	r = c.post("/login", url.Values{"name": {"a\x1b[31mb"}, "token": {testToken}}, nil, nil)
	assert.Equal(t, http.StatusBadRequest, r.Status)
	assert.Contains(t, r.Body, "The name contains a control character.")
}

func TestLogin_TokenInTheURLLogsInAndRedirectsToDropIt(t *testing.T) {
	c := newConsole(t, newFake(time.Now()))
	r := c.get("/?token="+url.QueryEscape(testToken)+"&name=ops", nil, nil)
	require.Equal(t, http.StatusSeeOther, r.Status)
	assert.Equal(t, "./", r.Header.Get("Location"), "the redirect drops the token from the address")
	cookie := r.cookie("capbus_admin")
	require.NotNil(t, cookie)

	page := c.get("/", cookie, nil)
	assert.Equal(t, http.StatusOK, page.Status)
	assert.Contains(t, page.Body, `<strong id="operator">ops</strong>`)
	assert.NotContains(t, page.Body, testToken)

	// Without a name the operator is "operator".
	r = c.get("/?token="+url.QueryEscape(testToken), nil, nil)
	require.Equal(t, http.StatusSeeOther, r.Status)
	assert.Contains(t, c.get("/", r.cookie("capbus_admin"), nil).Body, `<strong id="operator">operator</strong>`)

	// A wrong token in the URL is a failed login.
	r = c.get("/?token=wrong-token-0000000000", nil, nil)
	assert.Equal(t, http.StatusUnauthorized, r.Status)
	assert.Nil(t, r.cookie("capbus_admin"))
}

func TestLogout_EndsTheSession(t *testing.T) {
	c := newConsole(t, newFake(time.Now()))
	cookie, csrf := c.login("ops")
	r := c.post("/logout", url.Values{"csrf": {csrf}}, cookie, nil)
	require.Equal(t, http.StatusSeeOther, r.Status)
	cleared := r.cookie("capbus_admin")
	require.NotNil(t, cleared)
	assert.Equal(t, -1, cleared.MaxAge)
	assert.Contains(t, c.get("/", cookie, nil).Body, `id="login"`, "the old cookie no longer opens the console")
}

func TestGrant_CallsTheBackendWithOperatorRemoteIPUserAndCapability(t *testing.T) {
	fake := newFake(time.Now())
	c := newConsole(t, fake)
	cookie, csrf := c.login("ops")

	page := c.get("/", cookie, nil)
	assert.Contains(t, page.Body, `data-user="bobby" data-target="weather.temperature" data-allowed="false"`)

	r := c.post("/grant", url.Values{"csrf": {csrf}, "user": {"bobby"}, "capability": {"can_read_temp"}}, cookie, nil)
	require.Equal(t, http.StatusSeeOther, r.Status, r.Body)
	assert.Equal(t, "./", r.Header.Get("Location"))
	assert.Equal(t, []fakeEdit{{Op: "grant", By: "console:ops from 127.0.0.1", User: "bobby", Capability: "can_read_temp"}},
		fake.recordedEdits())

	page = c.get("/", cookie, nil)
	assert.Contains(t, page.Body, `<p id="flash" class="flash" role="status">Granted can_read_temp to bobby.</p>`)
	assert.Contains(t, page.Body, `data-user="bobby" data-target="weather.temperature" data-allowed="true"`)
	assert.NotContains(t, c.get("/", cookie, nil).Body, `id="flash"`, "a flash message shows once")
}

func TestRevoke_CallsTheBackend(t *testing.T) {
	fake := newFake(time.Now())
	c := newConsole(t, fake)
	cookie, csrf := c.login("carol's deputy")
	r := c.post("/revoke", url.Values{"csrf": {csrf}, "user": {"alice"}, "capability": {"can_read_temp"}}, cookie, nil)
	require.Equal(t, http.StatusSeeOther, r.Status, r.Body)
	assert.Equal(t, []fakeEdit{{Op: "revoke", By: "console:carol's deputy from 127.0.0.1", User: "alice", Capability: "can_read_temp"}},
		fake.recordedEdits())
	page := c.get("/", cookie, nil)
	assert.Contains(t, page.Body, "Revoked can_read_temp from alice.")
	assert.Contains(t, page.Body, `data-user="alice" data-target="weather.temperature" data-allowed="false"`)
}

func TestGrant_BackendErrorIsShownOnThePage(t *testing.T) {
	fake := newFake(time.Now())
	c := newConsole(t, fake)
	cookie, csrf := c.login("ops")
	fake.setEditErr(errors.New(`edit refused: the file would be invalid: auth.json:5:16: allow[0].roles[0]: role "admn" is not defined in "roles"`))

	r := c.post("/grant", url.Values{"csrf": {csrf}, "user": {"bobby"}, "capability": {"can_read_temp"}}, cookie, nil)
	assert.Equal(t, http.StatusUnprocessableEntity, r.Status)
	assert.Contains(t, r.Body, `<p id="error" class="error" role="alert">Could not grant can_read_temp for bobby: edit refused: the file would be invalid: auth.json:5:16: allow[0].roles[0]: role &#34;admn&#34; is not defined in &#34;roles&#34;</p>`)
	assert.Contains(t, r.Body, `id="edit-user" name="user" list="users" required maxlength="256" value="bobby"`, "the form keeps what was typed")
	assert.Contains(t, r.Body, `data-user="bobby" data-target="weather.temperature" data-allowed="false"`, "the page still shows the state")
}

func TestGrant_EmptyFieldsAreRefusedBeforeTheBackend(t *testing.T) {
	fake := newFake(time.Now())
	c := newConsole(t, fake)
	cookie, csrf := c.login("ops")
	r := c.post("/grant", url.Values{"csrf": {csrf}, "user": {"bobby"}, "capability": {""}}, cookie, nil)
	assert.Equal(t, http.StatusBadRequest, r.Status)
	assert.Contains(t, r.Body, "The capability is required.")
	assert.Empty(t, fake.recordedEdits())
}

func TestEdit_WithoutOrWithAWrongCSRFTokenIs403(t *testing.T) {
	fake := newFake(time.Now())
	c := newConsole(t, fake)
	cookie, csrf := c.login("ops")
	for _, form := range []url.Values{
		{"user": {"bobby"}, "capability": {"can_read_temp"}},
		{"csrf": {""}, "user": {"bobby"}, "capability": {"can_read_temp"}},
		{"csrf": {csrf[:len(csrf)-1] + "x"}, "user": {"bobby"}, "capability": {"can_read_temp"}},
	} {
		for _, path := range []string{"/grant", "/revoke", "/logout"} {
			r := c.post(path, form, cookie, nil)
			assert.Equal(t, http.StatusForbidden, r.Status, "%s %v", path, form)
			assert.Contains(t, r.Body, "CSRF")
		}
	}
	// Another session's token is no good either.
	_, otherCSRF := c.login("ops")
	r := c.post("/grant", url.Values{"csrf": {otherCSRF}, "user": {"bobby"}, "capability": {"can_read_temp"}}, cookie, nil)
	assert.Equal(t, http.StatusForbidden, r.Status)
	assert.Empty(t, fake.recordedEdits())
	assert.Contains(t, c.get("/", cookie, nil).Body, `id="operator"`, "the session survives")
}

func TestEdit_CrossSiteRequestsAre403(t *testing.T) {
	fake := newFake(time.Now())
	c := newConsole(t, fake)
	cookie, csrf := c.login("ops")
	form := url.Values{"csrf": {csrf}, "user": {"bobby"}, "capability": {"can_read_temp"}}
	for _, h := range []map[string]string{
		{"Origin": "http://evil.example"},
		{"Sec-Fetch-Site": "cross-site"},
		{"Sec-Fetch-Site": "same-site"},
		{"Sec-Fetch-Site": "cross-site", "Origin": c.ts.URL},
	} {
		r := c.post("/grant", form, cookie, h)
		assert.Equal(t, http.StatusForbidden, r.Status, "%v", h)
	}
	// Login is protected too (login CSRF).
	r := c.post("/login", url.Values{"name": {"ops"}, "token": {testToken}}, nil, map[string]string{"Origin": "http://evil.example"})
	assert.Equal(t, http.StatusForbidden, r.Status)
	assert.Empty(t, fake.recordedEdits())

	// The browser's own same-origin request passes.
	r = c.post("/grant", form, cookie, map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": c.ts.URL})
	assert.Equal(t, http.StatusSeeOther, r.Status, r.Body)
	assert.Len(t, fake.recordedEdits(), 1)
}

func TestEdit_WithoutSessionIs403(t *testing.T) {
	fake := newFake(time.Now())
	c := newConsole(t, fake)
	_, csrf := c.login("ops")
	r := c.post("/grant", url.Values{"csrf": {csrf}, "user": {"bobby"}, "capability": {"can_read_temp"}}, nil, nil)
	assert.Equal(t, http.StatusForbidden, r.Status)
	assert.Contains(t, r.Body, "Your session has ended: log in again.")
	assert.Empty(t, fake.recordedEdits())
}

func TestHost_NotAllowedIs421ForConsoleAndMetrics(t *testing.T) {
	metrics := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "m 1\n") })
	c := newConsole(t, newFake(time.Now()), admin.WithMetrics(metrics))
	cookie, _ := c.login("ops")
	_, port, err := net.SplitHostPort(c.ts.Listener.Addr().String())
	require.NoError(t, err)
	rebound := map[string]string{"Host": "attacker.example:" + port}

	r := c.get("/", cookie, rebound)
	assert.Equal(t, http.StatusMisdirectedRequest, r.Status)
	assert.NotContains(t, r.Body, "bobby")
	assert.Equal(t, http.StatusMisdirectedRequest, c.get("/metrics", nil, rebound).Status)
	assert.Equal(t, http.StatusMisdirectedRequest, c.post("/login", url.Values{"name": {"x"}, "token": {testToken}}, nil, rebound).Status)

	// Probes are not host-checked: a load balancer may send any Host.
	assert.Equal(t, http.StatusOK, c.get("/healthz", nil, rebound).Status)
	assert.Equal(t, http.StatusOK, c.get("/readyz", nil, rebound).Status)

	// The default names and the listen address pass.
	for _, host := range []string{"localhost:" + port, "127.0.0.1:" + port, "LOCALHOST", "[::1]:" + port} {
		assert.Equal(t, http.StatusOK, c.get("/metrics", nil, map[string]string{"Host": host}).Status, host)
	}
}

func TestHost_WithAllowedHostsAddsNames(t *testing.T) {
	c := newConsole(t, newFake(time.Now()), admin.WithAllowedHosts("admin.example.org"))
	assert.Equal(t, http.StatusOK, c.get("/", nil, map[string]string{"Host": "admin.example.org"}).Status)
	assert.Equal(t, http.StatusOK, c.get("/", nil, map[string]string{"Host": "localhost"}).Status)
	assert.Equal(t, http.StatusMisdirectedRequest, c.get("/", nil, map[string]string{"Host": "other.example.org"}).Status)
}

func TestConsole_EscapesHostileValuesFromPeers(t *testing.T) {
	fake := newFake(time.Now())
	hostile := `<script>alert(1)</script>`
	fake.addPeer(admin.Peer{Identity: hostile, UserID: `"><img src=x onerror=alert(2)>`, Address: "127.0.0.1:1"})
	fake.addDenial(admin.Denial{Time: time.Now(), UserID: "bobby", Identity: hostile, Target: `weather.<b>x</b>`,
		Reason: `</td><script>alert(3)</script>`, Missing: []string{`<i>cap</i>`}})
	c := newConsole(t, fake)
	cookie, _ := c.login(`<b>ops</b>`)

	r := c.get("/", cookie, nil)
	require.Equal(t, http.StatusOK, r.Status)
	assert.NotContains(t, r.Body, "<script")
	assert.NotContains(t, r.Body, "<img")
	assert.NotContains(t, r.Body, "<b>")
	assert.NotContains(t, r.Body, "<i>")
	assert.Contains(t, r.Body, "&lt;script&gt;alert(1)&lt;/script&gt;")
	assert.Contains(t, r.Body, `data-identity="&lt;script&gt;alert(1)&lt;/script&gt;"`)
	assert.Contains(t, r.Body, "&#34;&gt;&lt;img src=x onerror=alert(2)&gt;")
	assert.Contains(t, r.Body, "&lt;/td&gt;&lt;script&gt;alert(3)&lt;/script&gt;")
	assert.Contains(t, r.Body, `<strong id="operator">&lt;b&gt;ops&lt;/b&gt;</strong>`)
}

func TestOverview_ShowsPolicyPeersAgentsMatrixAndDenials(t *testing.T) {
	c := newConsole(t, newFake(time.Now()))
	cookie, _ := c.login("ops")
	r := c.get("/", cookie, nil)
	require.Equal(t, http.StatusOK, r.Status)
	b := r.Body

	// Policy state with the last rejected edit.
	assert.Contains(t, b, `<dd id="policy-file"><code>/var/lib/capbus/auth.json</code></dd>`)
	assert.Contains(t, b, `<dd id="policy-generation">7</dd>`)
	assert.Contains(t, b, `data-line="14" data-column="7">line 14, column 7: allow[2].capabilites: unknown key; did you mean &#34;capabilities&#34;?</span>`)
	// Peers.
	assert.Contains(t, b, `<tr class="peer" data-identity="bobby.dashboard" data-user="bobby">`)
	assert.Contains(t, b, `<td class="num">2 msgs, 1.8 KiB</td>`)
	// Agents and their exports' requirements.
	assert.Contains(t, b, `<tr class="export" data-method="forecast"><td><code>forecast</code></td><td><span class="tag">can_read_temp</span> <span class="tag">can_read_weather_data</span> </td>`)
	assert.Contains(t, b, `<tr class="export" data-method="set_units"><td><code>set_units</code></td><td><span class="none">none</span></td><td><span class="tag">admin</span> </td>`)
	// Matrix: allowed, denied with what is missing and a grant button for
	// each missing capability, none for a missing role, conditional.
	assert.Contains(t, b, `<td class="cell allowed" data-user="alice" data-target="weather.temperature" data-allowed="true" data-conditional="false" data-state="allowed"`)
	assert.Contains(t, b, `<td class="cell denied" data-user="bobby" data-target="weather.temperature" data-allowed="false" data-conditional="false" data-state="denied"`)
	assert.Contains(t, b, `<span class="missing" data-missing="can_read_temp can_read_weather_data">missing: can_read_temp, can_read_weather_data</span>`)
	assert.Contains(t, b, `data-user="bobby" data-capability="can_read_weather_data">grant can_read_weather_data to bobby</button>`)
	assert.Contains(t, b, `<span class="missing" data-missing="role:admin">missing: role:admin</span>`)
	assert.NotContains(t, b, `data-capability="role:admin"`)
	assert.Contains(t, b, `data-user="ops" data-target="hvac.thermostat.set_point" data-allowed="true" data-conditional="true" data-state="conditional"`)
	assert.Contains(t, b, `<th colspan="1" class="agent-head"><code>hvac.thermostat</code></th>`)
	assert.Contains(t, b, `<li>can_read_temp: allow[0] (alice) capabilities</li>`)
	// Denials, newest first.
	first := strings.Index(b, `<tr class="denial" data-user="bobby" data-identity="bobby.dashboard" data-target="weather.temperature">`)
	second := strings.Index(b, `<tr class="denial" data-user="bobby" data-identity="bobby.dashboard" data-target="weather.forecast">`)
	require.Positive(t, first)
	assert.Less(t, first, second)
}

func TestOverview_SnapshotErrorIsShown(t *testing.T) {
	fake := newFake(time.Now())
	c := newConsole(t, fake)
	cookie, _ := c.login("ops")
	fake.setSnapErr(errors.New("platform is shutting down"))
	r := c.get("/", cookie, nil)
	assert.Equal(t, http.StatusServiceUnavailable, r.Status)
	assert.Contains(t, r.Body, "The platform's state could not be read: platform is shutting down")
}

func TestRoutes_UnknownPathsAre404AndGETOfAFormTargetIs405(t *testing.T) {
	c := newConsole(t, newFake(time.Now()))
	assert.Equal(t, http.StatusNotFound, c.get("/nope", nil, nil).Status)
	assert.Equal(t, http.StatusMethodNotAllowed, c.get("/grant", nil, nil).Status)
}

func TestNew_RequiresABackendAndAStrongToken(t *testing.T) {
	_, err := admin.New(nil, admin.WithToken(testToken))
	assert.ErrorIs(t, err, admin.ErrNoBackend)
	_, err = admin.New(newFake(time.Now()))
	assert.ErrorIs(t, err, admin.ErrNoToken)
	_, err = admin.New(newFake(time.Now()), admin.WithToken("short"))
	assert.ErrorIs(t, err, admin.ErrWeakToken)
	assert.ErrorContains(t, err, "WithToken gives 5 bytes, want at least 16")
}

func TestNew_TokenFileIsGeneratedWithMode0600AndReused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "admin.token")
	_, err := admin.New(newFake(time.Now()), admin.WithTokenFile(path))
	require.NoError(t, err)
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	token := strings.TrimSpace(string(b))
	assert.Regexp(t, `^[A-Za-z0-9_-]{43}$`, token, "32 random bytes in base64url")

	// A second server reads the same token, and it opens the console.
	srv, err := admin.New(newFake(time.Now()), admin.WithTokenFile(path))
	require.NoError(t, err)
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.PostForm(ts.URL+"/login", url.Values{"name": {"ops"}, "token": {token}})
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusSeeOther, resp.StatusCode)
	after, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, b, after, "the token file is not rewritten")
}

func TestNew_TokenFileReadableByOthersIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "admin.token")
	require.NoError(t, os.WriteFile(path, []byte(testToken+"\n"), 0o644))
	require.NoError(t, os.Chmod(path, 0o644)) // whatever the umask
	_, err := admin.New(newFake(time.Now()), admin.WithTokenFile(path))
	require.ErrorIs(t, err, admin.ErrInsecureTokenFile)
	assert.ErrorContains(t, err, path+" has mode 0644; run: chmod 600 "+path)

	require.NoError(t, os.Chmod(path, 0o640))
	_, err = admin.New(newFake(time.Now()), admin.WithTokenFile(path))
	assert.ErrorIs(t, err, admin.ErrInsecureTokenFile)

	require.NoError(t, os.Chmod(path, 0o600))
	_, err = admin.New(newFake(time.Now()), admin.WithTokenFile(path))
	assert.NoError(t, err)
}

func TestNew_EmptyOrShortTokenFileIsRefused(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.token")
	require.NoError(t, os.WriteFile(empty, []byte("\n"), 0o600))
	_, err := admin.New(newFake(time.Now()), admin.WithTokenFile(empty))
	assert.ErrorIs(t, err, admin.ErrNoToken)
	assert.ErrorContains(t, err, empty)

	short := filepath.Join(dir, "short.token")
	require.NoError(t, os.WriteFile(short, []byte("abc\n"), 0o600))
	_, err = admin.New(newFake(time.Now()), admin.WithTokenFile(short))
	assert.ErrorIs(t, err, admin.ErrWeakToken)
	assert.ErrorContains(t, err, short)

	_, err = admin.New(newFake(time.Now()), admin.WithTokenFile(filepath.Join(dir, "no-such-dir", "admin.token")))
	assert.ErrorContains(t, err, "no-such-dir")
}

func TestServe_ServesUntilTheContextEndsThenReturnsNil(t *testing.T) {
	srv, err := admin.New(newFake(time.Now()), admin.WithToken(testToken))
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()

	resp, err := http.Get("http://" + ln.Addr().String() + "/healthz")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, "ok\n", string(body))

	cancel()
	select {
	case err := <-done:
		assert.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
	_, err = net.DialTimeout("tcp", ln.Addr().String(), time.Second)
	assert.Error(t, err, "the listener is closed")
}
