// Package admin is the platform's admin HTTP endpoint: Prometheus metrics,
// health and readiness probes, and a web console for operators who would
// rather look than read.
//
// # Routes
//
//	GET  /metrics      the handler given by WithMetrics (404 without)
//	GET  /healthz      200 "ok" while the process serves
//	GET  /readyz       200 "ready", or 503 with the text of Backend.Ready's error
//	GET  /             the console: login form, or the overview page
//	GET  /?token=...   one-click login (optionally &name=...), then a redirect that drops the token
//	POST /login        log in: form fields name and token
//	POST /logout       log out
//	POST /grant        grant a capability: form fields user, capability, csrf
//	POST /revoke       revoke a capability: form fields user, capability, csrf
//	GET  /console.css  the console's stylesheet
//
// /metrics, /healthz and /readyz need no secret: bind the endpoint to a
// loopback address (the default a platform should use) or firewall it.
// Everything else of the console needs a session, which a login with the
// access token starts.
//
// # Security
//
//   - The access token (WithToken, or WithTokenFile: generated into a 0600
//     file if missing, refused if group or others may read it) is compared
//     in constant time. Failed logins are rate-limited per remote IP:
//     after FreeLoginFailures failures the address waits LoginBackoff,
//     doubling up to MaxLoginBackoff (429 with Retry-After).
//   - A session is a random id in an HttpOnly, SameSite=Strict cookie
//     (Secure over TLS), held server-side for SessionTTL; at most
//     MaxSessions live at once (a new login ends the oldest).
//   - Every POST carries the session's CSRF token (checked in constant
//     time), and cross-site requests (by Sec-Fetch-Site or Origin) are
//     refused with 403.
//   - The Host header of console and /metrics requests must name an
//     allowed host (WithAllowedHosts; by default localhost, 127.0.0.1, ::1
//     and the address the request came in on), else 421: this defeats DNS
//     rebinding. /healthz and /readyz take any Host, for probes.
//   - Pages are html/template with every value escaped (identities and
//     reasons come from peers), a Content-Security-Policy that allows no
//     script at all and only the console's own stylesheet, frame denial,
//     no referrer, nosniff and no-store. Nothing is loaded from outside
//     the binary.
//
// # The overview page
//
// It shows the policy (file, generation, load time, the last rejected edit
// with its line and column), the permission matrix (users × agent methods,
// each cell allowed, denied or conditional, with what is missing, a grant
// button per missing capability and the reason and grant sources under
// "why"), a grant/revoke form, the recent denials, the peers and each
// agent's exports with their requirements. Elements carry stable ids and
// data attributes for tests: a matrix cell is
//
//	<td class="cell denied" data-user="bobby" data-target="weather.temperature"
//	    data-allowed="false" data-conditional="false" data-state="denied">
//
// An edit calls Backend.Grant or Backend.Revoke with by set to
// "console:<operator name> from <remote ip>". A Backend error is shown on
// the page (422); success redirects back to the page with a message.
//
// # Wiring it into a platform
//
//	srv, err := admin.New(backend,
//		admin.WithTokenFile(filepath.Join(home, "admin.token")),
//		admin.WithMetrics(promhttp.HandlerFor(registry, promhttp.HandlerOpts{})),
//		admin.WithLogger(logger))
//	ln, err := net.Listen("tcp", "127.0.0.1:22917")
//	go srv.Serve(ctx, ln) // returns nil once ctx ends and requests in flight are done
//
// The package admintest drives the console in a real headless Chromium for
// end-to-end tests.
package admin
