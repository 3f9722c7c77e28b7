package admin

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// cookieName is the name of the session cookie.
const cookieName = "capbus_admin"

// maxFormBytes bounds a POST body.
const maxFormBytes = 16 << 10

// maxNameLength bounds the operator's name, maxFieldLength the fields of
// an edit, in runes.
const (
	maxNameLength  = 64
	maxFieldLength = 256
)

// loginView is the data of the login page.
type loginView struct {
	Name  string // the name typed, kept after a failure
	Error string
}

// index serves GET /: the overview with a session, the login form
// without; ?token= logs in.
func (s *Server) index(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Has("token") {
		s.tokenLogin(w, r)
		return
	}
	id, sess, ok := s.session(r, true)
	if !ok {
		s.render(w, http.StatusOK, "login.html", loginView{})
		return
	}
	s.overview(w, r, id, sess, http.StatusOK, "", editForm{})
}

// tokenLogin serves GET /?token=...[&name=...]: a one-click login URL.
// The token leaves the address bar by a redirect to /.
func (s *Server) tokenLogin(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	name := q.Get("name")
	if name == "" {
		name = "operator"
	}
	if !s.checkLogin(w, r, name, q.Get("token")) {
		return
	}
	seeOther(w)
}

// login serves POST /login.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form: "+err.Error(), http.StatusBadRequest)
		return
	}
	if !s.checkLogin(w, r, strings.TrimSpace(r.PostForm.Get("name")), r.PostForm.Get("token")) {
		return
	}
	seeOther(w)
}

// checkLogin checks the token (rate-limited per remote IP) and on success
// starts a session and sets its cookie. On failure it writes the login
// page with the error and returns false.
func (s *Server) checkLogin(w http.ResponseWriter, r *http.Request, name, token string) bool {
	ip := remoteIP(r)
	if d := s.limiter.wait(ip); d > 0 {
		s.refuseLogin(w, name, d)
		return false
	}
	if msg := checkText("name", name, maxNameLength); msg != "" {
		s.render(w, http.StatusBadRequest, "login.html", loginView{Name: name, Error: msg})
		return false
	}
	sum := sha256.Sum256([]byte(token))
	if subtle.ConstantTimeCompare(sum[:], s.tokenHash[:]) != 1 {
		d := s.limiter.fail(ip)
		s.log.Warn("admin: login failed: wrong token", "name", name, "remote", ip)
		if d > 0 {
			s.refuseLogin(w, name, d)
			return false
		}
		s.render(w, http.StatusUnauthorized, "login.html", loginView{Name: name, Error: "Wrong access token."})
		return false
	}
	s.limiter.succeed(ip)
	id, sess, evicted := s.sessions.create(name)
	if evicted {
		s.log.Warn("admin: too many sessions: the oldest was ended", "max", MaxSessions)
	}
	http.SetCookie(w, &http.Cookie{
		Name:     cookieName,
		Value:    id,
		Path:     "/",
		Expires:  sess.expires,
		MaxAge:   int(SessionTTL / time.Second),
		HttpOnly: true,
		Secure:   r.TLS != nil,
		SameSite: http.SameSiteStrictMode,
	})
	s.log.Info("admin: login", "name", name, "remote", ip)
	return true
}

func (s *Server) refuseLogin(w http.ResponseWriter, name string, d time.Duration) {
	secs := int(math.Ceil(d.Seconds()))
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	s.render(w, http.StatusTooManyRequests, "login.html", loginView{Name: name,
		Error: fmt.Sprintf("Too many failed logins from your address: try again in %s.", time.Duration(secs)*time.Second)})
}

// logout serves POST /logout.
func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	id, sess, ok := s.postSession(w, r)
	if !ok {
		return
	}
	s.sessions.remove(id)
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: "/", MaxAge: -1, HttpOnly: true,
		Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	s.log.Info("admin: logout", "name", sess.name, "remote", remoteIP(r))
	seeOther(w)
}

// session returns the request's live session. take also consumes its
// flash message.
func (s *Server) session(r *http.Request, take bool) (string, session, bool) {
	c, err := r.Cookie(cookieName)
	if err != nil || c.Value == "" {
		return "", session{}, false
	}
	var sess session
	var ok bool
	if take {
		sess, ok = s.sessions.take(c.Value)
	} else {
		sess, ok = s.sessions.get(c.Value)
	}
	return c.Value, sess, ok
}

// postSession checks a console POST: a live session and its CSRF token.
// On failure it writes 403 and returns false.
func (s *Server) postSession(w http.ResponseWriter, r *http.Request) (string, session, bool) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form: "+err.Error(), http.StatusBadRequest)
		return "", session{}, false
	}
	id, sess, ok := s.session(r, false)
	if !ok {
		s.render(w, http.StatusForbidden, "login.html", loginView{Error: "Your session has ended: log in again."})
		return "", session{}, false
	}
	if subtle.ConstantTimeCompare([]byte(r.PostForm.Get("csrf")), []byte(sess.csrf)) != 1 {
		s.log.Warn("admin: POST without a valid CSRF token refused", "path", r.URL.Path, "name", sess.name, "remote", remoteIP(r))
		http.Error(w, "missing or wrong CSRF token: reload the page and try again", http.StatusForbidden)
		return "", session{}, false
	}
	sess.flash = "" // shown by the next GET, not by this POST's page
	return id, sess, true
}

// editKind is grant or revoke.
type editKind int

const (
	editGrant editKind = iota
	editRevoke
)

// editForm is what an edit form sent, kept to refill the form after an
// error.
type editForm struct {
	User, Capability string
}

// edit serves POST /grant and POST /revoke.
func (s *Server) edit(kind editKind) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, sess, ok := s.postSession(w, r)
		if !ok {
			return
		}
		f := editForm{User: strings.TrimSpace(r.PostForm.Get("user")), Capability: strings.TrimSpace(r.PostForm.Get("capability"))}
		msg := checkText("user", f.User, maxFieldLength)
		if msg == "" {
			msg = checkText("capability", f.Capability, maxFieldLength)
		}
		if msg != "" {
			s.overview(w, r, id, sess, http.StatusBadRequest, msg, f)
			return
		}
		by := "console:" + sess.name + " from " + remoteIP(r)
		var err error
		var done string
		if kind == editGrant {
			err = s.b.Grant(r.Context(), by, f.User, f.Capability)
			done = fmt.Sprintf("Granted %s to %s.", f.Capability, f.User)
		} else {
			err = s.b.Revoke(r.Context(), by, f.User, f.Capability)
			done = fmt.Sprintf("Revoked %s from %s.", f.Capability, f.User)
		}
		verb := [...]string{"grant", "revoke"}[kind]
		if err != nil {
			s.log.Warn("admin: edit refused", "edit", verb, "by", by, "user", f.User, "capability", f.Capability, "err", err)
			s.overview(w, r, id, sess, http.StatusUnprocessableEntity,
				fmt.Sprintf("Could not %s %s for %s: %v", verb, f.Capability, f.User, err), f)
			return
		}
		s.log.Info("admin: edit", "edit", verb, "by", by, "user", f.User, "capability", f.Capability)
		s.sessions.setFlash(id, done)
		seeOther(w)
	}
}

// seeOther redirects to the console's page with a relative URL, so that
// the console also works behind a reverse proxy that adds a path prefix.
// The query (a one-click ?token=) is dropped.
func seeOther(w http.ResponseWriter) {
	w.Header().Set("Location", "./")
	w.WriteHeader(http.StatusSeeOther)
}

// checkText returns a message if a form field is empty, too long or has
// control characters.
func checkText(field, v string, max int) string {
	switch {
	case v == "":
		return fmt.Sprintf("The %s is required.", field)
	case !utf8.ValidString(v):
		return fmt.Sprintf("The %s is not valid UTF-8.", field)
	case utf8.RuneCountInString(v) > max:
		return fmt.Sprintf("The %s is longer than %d characters.", field, max)
	case strings.IndexFunc(v, unicode.IsControl) >= 0:
		return fmt.Sprintf("The %s contains a control character.", field)
	}
	return ""
}

// render executes a page template into a buffer, so that a template error
// gives a clean 500 rather than half a page.
func (s *Server) render(w http.ResponseWriter, status int, page string, data any) {
	var buf bytes.Buffer
	if err := s.pages.ExecuteTemplate(&buf, page, data); err != nil {
		s.log.Error("admin: rendering a page failed", "page", page, "err", err)
		http.Error(w, "internal error rendering the page", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = buf.WriteTo(w)
}

// overview renders the overview page.
func (s *Server) overview(w http.ResponseWriter, r *http.Request, id string, sess session, status int, errMsg string, f editForm) {
	v := overviewView{
		Operator: sess.name,
		Remote:   remoteIP(r),
		CSRF:     sess.csrf,
		Flash:    sess.flash,
		Error:    errMsg,
		Form:     f,
		Now:      time.Now(),
	}
	snap, err := s.b.Snapshot(r.Context())
	if err != nil {
		s.log.Error("admin: snapshot failed", "err", err)
		v.SnapshotError = err.Error()
		if status == http.StatusOK {
			status = http.StatusServiceUnavailable
		}
	} else {
		v.Snap = snap
		v.Columns, v.Groups, v.Rows = matrixView(snap.Matrix)
	}
	s.render(w, status, "overview.html", v)
}

// overviewView is the data of the overview page.
type overviewView struct {
	Operator, Remote, CSRF string
	Flash, Error           string
	SnapshotError          string
	Form                   editForm
	Now                    time.Time
	Snap                   Snapshot
	Columns                []column
	Groups                 []columnGroup
	Rows                   []row
}

// column is one target of the matrix, split for the header.
type column struct {
	Target, Agent, Method string
}

// columnGroup is consecutive columns of one agent.
type columnGroup struct {
	Agent string
	Span  int
}

// row is one user's line of the matrix.
type row struct {
	User  string
	Cells []cellView
}

// cellView is one cell of the matrix as shown.
type cellView struct {
	User, Target string
	State        string // allowed, denied, conditional or unknown
	Cell
	GrantCaps    []string // missing capabilities, each with a grant button
	MissingRoles []string // missing roles (no button: Backend grants capabilities)
	Title        string   // tooltip: reason and sources
}

func matrixView(m Matrix) ([]column, []columnGroup, []row) {
	cols := make([]column, len(m.Targets))
	var groups []columnGroup
	for i, t := range m.Targets {
		agent, method := t, ""
		if j := strings.LastIndexByte(t, '.'); j > 0 {
			agent, method = t[:j], t[j+1:]
		}
		cols[i] = column{Target: t, Agent: agent, Method: method}
		if n := len(groups); n > 0 && groups[n-1].Agent == agent {
			groups[n-1].Span++
		} else {
			groups = append(groups, columnGroup{Agent: agent, Span: 1})
		}
	}
	rows := make([]row, len(m.Users))
	for u, user := range m.Users {
		cells := make([]cellView, len(m.Targets))
		for t, target := range m.Targets {
			cv := cellView{User: user, Target: target, State: "unknown"}
			if u < len(m.Cells) && t < len(m.Cells[u]) {
				cv.Cell = m.Cells[u][t]
				switch {
				case cv.Conditional:
					cv.State = "conditional"
				case cv.Allowed:
					cv.State = "allowed"
				default:
					cv.State = "denied"
				}
				for _, miss := range cv.Missing {
					if role, ok := strings.CutPrefix(miss, "role:"); ok {
						cv.MissingRoles = append(cv.MissingRoles, role)
					} else if !cv.Allowed {
						cv.GrantCaps = append(cv.GrantCaps, miss)
					}
				}
				cv.Title = strings.Join(append([]string{cv.Reason}, cv.Sources...), "\n")
			}
			cells[t] = cv
		}
		rows[u] = row{User: user, Cells: cells}
	}
	return cols, groups, rows
}

// templateFuncs returns the templates' helpers.
func templateFuncs() template.FuncMap {
	return template.FuncMap{
		"ts": func(t time.Time) string {
			if t.IsZero() {
				return "-"
			}
			return t.UTC().Format("2006-01-02 15:04:05 UTC")
		},
		"iso": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
		"ago": func(now, t time.Time) string {
			if t.IsZero() {
				return ""
			}
			return age(now.Sub(t))
		},
		"bytes": func(n int64) string {
			switch {
			case n < 1<<10:
				return fmt.Sprintf("%d B", n)
			case n < 1<<20:
				return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
			default:
				return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
			}
		},
		"join": strings.Join,
	}
}

// age formats a duration coarsely: 42s, 7m, 2h14m, 3d4h.
func age(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", max(int(d/time.Second), 0))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
	default:
		return fmt.Sprintf("%dd%dh", int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour))
	}
}
