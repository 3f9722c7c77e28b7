package admin

import (
	"context"
	"crypto/sha256"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"
)

//go:embed templates/*.html static/console.css
var assets embed.FS

// Server is the admin HTTP endpoint: /metrics, /healthz, /readyz and the
// web console. Create it with New; it is safe for concurrent use.
type Server struct {
	b         Backend
	tokenHash [sha256.Size]byte
	metrics   http.Handler
	log       *slog.Logger
	hosts     map[string]bool
	pages     *template.Template
	css       []byte
	sessions  *sessions
	limiter   *limiter
	handler   http.Handler
}

// New returns a Server for b. It needs an access token: WithToken or
// WithTokenFile.
func New(b Backend, opts ...Option) (*Server, error) {
	if b == nil {
		return nil, ErrNoBackend
	}
	var c config
	for _, o := range opts {
		o.apply(&c)
	}
	tok, source := c.token, "WithToken"
	if tok == "" && c.tokenFile != "" {
		var err error
		if tok, err = loadTokenFile(c.tokenFile); err != nil {
			return nil, err
		}
		source = "token file " + c.tokenFile
	}
	if tok == "" {
		return nil, ErrNoToken
	}
	if len(tok) < MinTokenLength {
		return nil, fmt.Errorf("%w: %s gives %d bytes, want at least %d", ErrWeakToken, source, len(tok), MinTokenLength)
	}
	pages, err := template.New("").Funcs(templateFuncs()).ParseFS(assets, "templates/*.html")
	if err != nil {
		return nil, fmt.Errorf("admin: templates: %w", err)
	}
	css, err := assets.ReadFile("static/console.css")
	if err != nil {
		return nil, fmt.Errorf("admin: stylesheet: %w", err)
	}
	s := &Server{
		b:         b,
		tokenHash: sha256.Sum256([]byte(tok)),
		metrics:   c.metrics,
		log:       c.logger,
		hosts:     map[string]bool{"localhost": true, "127.0.0.1": true, "::1": true},
		pages:     pages,
		css:       css,
		sessions:  newSessions(MaxSessions, SessionTTL, time.Now),
		limiter:   newLimiter(FreeLoginFailures, LoginBackoff, MaxLoginBackoff, time.Now),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	for _, h := range c.hosts {
		s.hosts[strings.ToLower(strings.Trim(h, "[]"))] = true
	}
	s.handler = s.routes()
	return s, nil
}

// Handler returns the handler of every route (see the package
// documentation): /metrics, /healthz, /readyz and the console under /.
// /metrics, /healthz and /readyz need no secret: bind the endpoint to a
// loopback address or firewall it.
func (s *Server) Handler() http.Handler { return s.handler }

func (s *Server) routes() http.Handler {
	console := http.NewServeMux()
	console.HandleFunc("GET /{$}", s.index)
	console.HandleFunc("POST /login", s.login)
	console.HandleFunc("POST /logout", s.logout)
	console.HandleFunc("POST /grant", s.edit(editGrant))
	console.HandleFunc("POST /revoke", s.edit(editRevoke))
	console.HandleFunc("GET /console.css", s.stylesheet)
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.log.Warn("admin: cross-site request refused", "method", r.Method, "path", r.URL.Path,
			"remote", remoteIP(r), "origin", r.Header.Get("Origin"), "sec-fetch-site", r.Header.Get("Sec-Fetch-Site"))
		http.Error(w, "cross-site request refused", http.StatusForbidden)
	}))

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("GET /metrics", s.checkHost(http.HandlerFunc(s.serveMetrics)))
	mux.Handle("/", s.checkHost(cop.Handler(console)))
	return securityHeaders(mux)
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if err := s.b.Ready(r.Context()); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, err.Error()+"\n")
		return
	}
	_, _ = io.WriteString(w, "ready\n")
}

func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request) {
	if s.metrics == nil {
		http.NotFound(w, r)
		return
	}
	s.metrics.ServeHTTP(w, r)
}

func (s *Server) stylesheet(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	_, _ = w.Write(s.css)
}

// checkHost refuses a request whose Host header names a host that is not
// allowed (DNS rebinding).
func (s *Server) checkHost(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.hostAllowed(r) {
			s.log.Warn("admin: request for a host that is not allowed refused", "host", r.Host, "remote", remoteIP(r))
			http.Error(w, fmt.Sprintf("host %q is not allowed: use the address the console listens on, or add it with WithAllowedHosts", r.Host), http.StatusMisdirectedRequest)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) hostAllowed(r *http.Request) bool {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.ToLower(strings.Trim(host, "[]"))
	if host == "" {
		return false
	}
	if s.hosts[host] {
		return true
	}
	// The address the connection arrived on (the listen host).
	if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		if h, _, err := net.SplitHostPort(la.String()); err == nil {
			if ip, hip := net.ParseIP(h), net.ParseIP(host); ip != nil && hip != nil && ip.Equal(hip) {
				return true
			}
		}
	}
	return false
}

// contentSecurityPolicy allows the console's own stylesheet and forms and
// nothing else: no script at all, no frames.
const contentSecurityPolicy = "default-src 'self'; script-src 'none'; object-src 'none'; base-uri 'none'; " +
	"form-action 'self'; frame-ancestors 'none'"

func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

// Serve serves Handler on ln until ctx ends, then shuts down gracefully
// (requests in flight get up to ShutdownTimeout) and returns nil. It
// closes ln. It returns an error if serving fails.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	done := make(chan error, 1)
	stop := context.AfterFunc(ctx, func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ShutdownTimeout)
		defer cancel()
		err := srv.Shutdown(sctx)
		if err != nil {
			_ = srv.Close()
		}
		done <- err
	})
	s.log.Info("admin: serving", "address", ln.Addr().String())
	err := srv.Serve(ln)
	if !errors.Is(err, http.ErrServerClosed) {
		if stop() {
			_ = ln.Close()
			return fmt.Errorf("admin: serve %s: %w", ln.Addr(), err)
		}
	}
	if err := <-done; err != nil {
		return fmt.Errorf("admin: shutdown: %w", err)
	}
	s.log.Info("admin: stopped", "address", ln.Addr().String())
	return nil
}

// remoteIP returns the IP of the request's peer (not a proxy header).
func remoteIP(r *http.Request) string {
	if h, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return h
	}
	return r.RemoteAddr
}
