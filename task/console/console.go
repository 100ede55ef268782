package console

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"strings"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/rs/zerolog"

	"github.com/taskfleet/taskfleet/credentials"
	"github.com/taskfleet/taskfleet/internal/errs"
	"github.com/taskfleet/taskfleet/klt"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/engine"
	"github.com/taskfleet/taskfleet/task/hierarchy"
)

// Defaults and limits of Config.
const (
	// DefaultPageSize is the number of tasks and results on a page.
	DefaultPageSize = 50
	// MaxPageSize is the largest PageSize.
	MaxPageSize = 1000
	// DefaultRefresh is how often a task page fetches fresh statistics
	// and results.
	DefaultRefresh = 2 * time.Second
	// DefaultUpcoming is how many next activations the schedule shows per
	// zone.
	DefaultUpcoming = 10
	// MaxUpcoming is the largest Upcoming.
	MaxUpcoming = 100
	// sessionCookie holds the random session id the CSRF token is bound to.
	sessionCookie = "taskfleet_console"
	// csrfField is the form field of the CSRF token.
	csrfField = "csrf"
)

// EngineStats is what the console shows of the server runtime: an
// *engine.Server satisfies it.
type EngineStats interface {
	Stats() engine.Stats
}

// Config configures the console. Manager and Actor are required; every
// other field has a documented default.
type Config struct {
	// Manager is the task management API every page and action goes
	// through, with the actor of the request (so the Manager's
	// Authorizer decides what each user sees and does).
	Manager *task.Manager
	// Actor returns who is making the request, from the host's own login
	// (a session cookie, a header set by a proxy). An error answers 401
	// Unauthorized and nothing else is done.
	Actor func(*http.Request) (task.Actor, error)
	// Prefix is the path under which the host mounts the handler, for
	// example "/console" (default: the root). The handler strips it.
	Prefix string
	// Inventory, when set, lets the task page explain why a device is in
	// or out of a task's scope and show a device's time zone.
	Inventory scope.Inventory
	// Location is the Administration Server's zone (default UTC): the
	// schedule preview shows activations in it.
	Location *time.Location
	// Clock is the time source of "now" (default: the wall clock).
	Clock clock.Clock
	// Engine, when set, adds the server runtime's counters to the task
	// list.
	Engine EngineStats
	// Hierarchy, when set, adds the statistics from secondary
	// Administration Servers to the task page.
	Hierarchy *hierarchy.Node
	// CSRFKey signs the per-session tokens of state-changing requests
	// (default: 32 random bytes, so tokens do not survive a restart of the
	// host; set it when several hosts serve the same console).
	CSRFKey []byte
	// PageSize is the number of tasks and results per page (default
	// DefaultPageSize, at most MaxPageSize).
	PageSize int
	// Upcoming is how many next activations the schedule shows per zone
	// (default DefaultUpcoming, at most MaxUpcoming).
	Upcoming int
	// Refresh is how often a task page fetches fresh statistics and
	// results (default DefaultRefresh; negative: never).
	Refresh time.Duration
	// Sealer, when set, lets an import re-enter the password of the
	// run-as account a KLT file names (files never hold passwords); the
	// password is sealed at once and never shown or logged. Without it,
	// imported tasks run as the default account.
	Sealer credentials.Sealer
	// MaxImportSize is the largest KLT file accepted by import, in bytes
	// (default: klt.DefaultMaxSize).
	MaxImportSize int64
	// Logger receives structured logs of refused requests and failures
	// (default: none). Secrets are never logged.
	Logger zerolog.Logger
}

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Console is the administration console: an http.Handler. It is safe for
// concurrent use.
type Console struct {
	cfg    Config
	m      *task.Manager
	loc    *time.Location
	clk    clock.Clock
	key    []byte
	tmpl   *template.Template
	mux    *http.ServeMux
	cop    *http.CrossOriginProtection
	static http.Handler
}

// New returns the console handler.
//
// Errors: ErrInvalid (a *task.ValidationError or ValidationErrors naming
// the Config field) when Manager or Actor is missing or a limit is out of
// range.
func New(cfg Config) (*Console, error) {
	var bad errs.ValidationErrors
	if cfg.Manager == nil {
		bad = append(bad, errs.Invalid("Manager", "", "is required"))
	}
	if cfg.Actor == nil {
		bad = append(bad, errs.Invalid("Actor", "", "is required"))
	}
	if cfg.PageSize < 0 || cfg.PageSize > MaxPageSize {
		bad = append(bad, errs.Range("PageSize", cfg.PageSize, 0, MaxPageSize))
	}
	if cfg.Upcoming < 0 || cfg.Upcoming > MaxUpcoming {
		bad = append(bad, errs.Range("Upcoming", cfg.Upcoming, 0, MaxUpcoming))
	}
	if cfg.MaxImportSize < 0 {
		bad = append(bad, errs.Invalid("MaxImportSize", fmt.Sprint(cfg.MaxImportSize), "must be 0 (the default) or positive"))
	}
	if cfg.Prefix != "" && (!strings.HasPrefix(cfg.Prefix, "/") || strings.HasSuffix(cfg.Prefix, "/")) {
		bad = append(bad, errs.Invalid("Prefix", cfg.Prefix, `must start with "/" and not end with "/" (for example "/console")`))
	}
	if len(cfg.CSRFKey) > 0 && len(cfg.CSRFKey) < 16 {
		bad = append(bad, errs.Invalid("CSRFKey", "", "must be at least 16 bytes"))
	}
	if err := bad.Err(); err != nil {
		return nil, err
	}
	if cfg.PageSize == 0 {
		cfg.PageSize = DefaultPageSize
	}
	if cfg.Upcoming == 0 {
		cfg.Upcoming = DefaultUpcoming
	}
	if cfg.Refresh == 0 {
		cfg.Refresh = DefaultRefresh
	}
	if cfg.MaxImportSize == 0 {
		cfg.MaxImportSize = klt.DefaultMaxSize
	}
	c := &Console{cfg: cfg, m: cfg.Manager, loc: cfg.Location, clk: cfg.Clock, key: cfg.CSRFKey}
	if c.loc == nil {
		c.loc = time.UTC
	}
	if c.clk == nil {
		c.clk = clock.New()
	}
	if len(c.key) == 0 {
		c.key = make([]byte, 32)
		_, _ = rand.Read(c.key) // crypto/rand.Read never fails on supported platforms
	}
	var err error
	c.tmpl, err = template.New("console").Funcs(c.funcs()).ParseFS(templateFS, "templates/*.html")
	if err != nil {
		return nil, fmt.Errorf("console: templates: %w", err)
	}
	sub, _ := fs.Sub(staticFS, "static")
	c.static = http.FileServerFS(sub)
	c.cop = http.NewCrossOriginProtection()
	c.routes()
	return c, nil
}

func (c *Console) routes() {
	mux := http.NewServeMux()
	mux.Handle("GET /static/", http.StripPrefix("/static", c.static))
	mux.HandleFunc("GET /{$}", c.page(c.listPage))
	mux.HandleFunc("GET /tasks/{id}", c.page(c.taskPage))
	mux.HandleFunc("GET /tasks/{id}/live", c.page(c.livePage))
	mux.HandleFunc("GET /tasks/{id}/compare", c.page(c.comparePage))
	mux.HandleFunc("GET /tasks/{id}/devices/{device}", c.page(c.devicePage))
	mux.HandleFunc("GET /tasks/{id}/export", c.page(c.export))
	mux.HandleFunc("GET /import", c.page(c.importPage))
	mux.HandleFunc("POST /import", c.action(c.importPreview))
	mux.HandleFunc("POST /import/commit", c.action(c.importCommit))
	mux.HandleFunc("POST /tasks/{id}/start", c.action(c.start))
	mux.HandleFunc("POST /tasks/{id}/start-for", c.action(c.startFor))
	mux.HandleFunc("POST /tasks/{id}/stop", c.action(c.stop))
	mux.HandleFunc("POST /tasks/{id}/suspend", c.action(c.suspend))
	mux.HandleFunc("POST /tasks/{id}/resume", c.action(c.resume))
	mux.HandleFunc("POST /tasks/{id}/rollback", c.action(c.rollback))
	c.mux = mux
}

// ServeHTTP implements http.Handler: it strips Config.Prefix and serves
// the pages, actions and assets. A request outside the prefix is 404.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	if c.cfg.Prefix != "" {
		if p == c.cfg.Prefix {
			http.Redirect(w, r, c.cfg.Prefix+"/", http.StatusMovedPermanently)
			return
		}
		rest, ok := strings.CutPrefix(p, c.cfg.Prefix)
		if !ok || !strings.HasPrefix(rest, "/") {
			http.NotFound(w, r)
			return
		}
		r2 := new(http.Request)
		*r2 = *r
		u := *r.URL
		u.Path = rest
		// Keep escaped slashes in a segment (a device id with "/").
		u.RawPath = strings.TrimPrefix(r.URL.RawPath, c.cfg.Prefix)
		r2.URL = &u
		r = r2
	}
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("X-Frame-Options", "DENY")
	w.Header().Set("Referrer-Policy", "same-origin")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; frame-ancestors 'none'; form-action 'self'")
	c.mux.ServeHTTP(w, r)
}

// req is what a page or an action knows about its request.
type req struct {
	r     *http.Request
	actor task.Actor
	token string
}

func (q *req) ctx() context.Context { return q.r.Context() }

// page wraps a GET handler: it resolves the actor and the session.
func (c *Console) page(h func(http.ResponseWriter, *req) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q, ok := c.begin(w, r)
		if !ok {
			return
		}
		if err := h(w, q); err != nil {
			c.failErr(w, q, err)
		}
	}
}

// action wraps a POST handler: cross-origin checks (Sec-Fetch-Site,
// Origin), then the CSRF token bound to the session and the actor.
func (c *Console) action(h func(http.ResponseWriter, *req) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := c.cop.Check(r); err != nil {
			c.cfg.Logger.Warn().Str("path", r.URL.Path).Msg("console: cross-origin request refused")
			c.fail(w, r, http.StatusForbidden, "This request came from another site and was refused.")
			return
		}
		q, ok := c.begin(w, r)
		if !ok {
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, c.cfg.MaxImportSize*2+1<<20)
		var perr error
		if strings.HasPrefix(r.Header.Get("Content-Type"), "multipart/form-data") {
			perr = r.ParseMultipartForm(1 << 20)
		} else {
			perr = r.ParseForm()
		}
		if perr != nil {
			c.fail(w, r, http.StatusBadRequest, "The form could not be read: the request is too large or malformed.")
			return
		}
		if !hmac.Equal([]byte(r.PostFormValue(csrfField)), []byte(q.token)) {
			c.cfg.Logger.Warn().Str("path", r.URL.Path).Str("actor", q.actor.ID).Msg("console: request without a valid CSRF token refused")
			c.fail(w, r, http.StatusForbidden, "This form has expired or did not come from the console. Reload the page and try again.")
			return
		}
		if err := h(w, q); err != nil {
			c.failErr(w, q, err)
		}
	}
}

// begin resolves the actor and the session cookie; it answers 401 when
// the host's Actor function fails.
func (c *Console) begin(w http.ResponseWriter, r *http.Request) (*req, bool) {
	actor, err := c.cfg.Actor(r)
	if err != nil || actor.ID == "" {
		c.fail(w, r, http.StatusUnauthorized, "Sign in to use the console.")
		return nil, false
	}
	sess := ""
	if ck, err := r.Cookie(sessionCookie); err == nil && len(ck.Value) >= 22 && len(ck.Value) <= 64 {
		sess = ck.Value
	}
	if sess == "" {
		var b [24]byte
		_, _ = rand.Read(b[:])
		sess = base64.RawURLEncoding.EncodeToString(b[:])
		path := c.cfg.Prefix + "/"
		http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: sess, Path: path, HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	}
	return &req{r: r, actor: actor, token: c.tokenFor(actor, sess)}, true
}

// tokenFor is the CSRF token of a session and an actor: an HMAC of both,
// so a token is useless with another session or another user.
func (c *Console) tokenFor(a task.Actor, sess string) string {
	h := hmac.New(sha256.New, c.key)
	h.Write([]byte(a.ID))
	h.Write([]byte{0})
	h.Write([]byte(sess))
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}

// failErr answers an error of the Manager: 403 without details for a
// refused operation, 404, 409 for a conflict, 400 with the validation
// message for bad input, 500 otherwise (logged, not shown).
func (c *Console) failErr(w http.ResponseWriter, q *req, err error) {
	var ve *task.ValidationError
	var ves task.ValidationErrors
	switch {
	case errors.Is(err, task.ErrPermission):
		c.fail(w, q.r, http.StatusForbidden, "You are not allowed to do this.")
	case errors.Is(err, task.ErrNotFound):
		c.fail(w, q.r, http.StatusNotFound, "Not found.")
	case errors.Is(err, task.ErrConflict):
		c.fail(w, q.r, http.StatusConflict, "The task was changed by someone else in the meantime, or the name is taken. Reload the page and try again.")
	case errors.As(err, &ve), errors.As(err, &ves), errors.Is(err, task.ErrInvalid):
		c.fail(w, q.r, http.StatusBadRequest, err.Error())
	default:
		var nx *klt.NotExportableError
		if errors.As(err, &nx) {
			c.fail(w, q.r, http.StatusBadRequest, err.Error())
			return
		}
		c.cfg.Logger.Error().Err(err).Str("path", q.r.URL.Path).Str("actor", q.actor.ID).Msg("console: request failed")
		c.fail(w, q.r, http.StatusInternalServerError, "Something went wrong; the server log has the details.")
	}
}

type errorView struct {
	Base
	Status  int
	Title   string
	Message string
}

func (c *Console) fail(w http.ResponseWriter, r *http.Request, status int, msg string) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	v := errorView{Base: Base{Prefix: c.cfg.Prefix, Title: http.StatusText(status)}, Status: status, Title: http.StatusText(status), Message: msg}
	if err := c.tmpl.ExecuteTemplate(w, "error.html", v); err != nil {
		c.cfg.Logger.Error().Err(err).Msg("console: render error page")
	}
}

// render writes a page.
// render writes a page, rendered in full first so that a template error
// is a clean 500 rather than half a page.
func (c *Console) render(w http.ResponseWriter, name string, v any) error {
	var buf bytes.Buffer
	if err := c.tmpl.ExecuteTemplate(&buf, name, v); err != nil {
		return fmt.Errorf("console: render %s: %w", name, err)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, err := w.Write(buf.Bytes())
	return err
}

// Base is what every page template gets.
type Base struct {
	// Prefix is Config.Prefix, for links.
	Prefix string
	// Title is the page title.
	Title string
	// Actor is the user.
	Actor string
	// CSRF is the token every form posts.
	CSRF string
	// Notice is a message about the last action.
	Notice string
}

func (c *Console) base(q *req, title string) Base {
	return Base{Prefix: c.cfg.Prefix, Title: title, Actor: q.actor.ID, CSRF: q.token, Notice: notices[q.r.URL.Query().Get("done")]}
}

// notices are the messages after an action; only these codes are shown,
// so a link cannot put text on the page.
var notices = map[string]string{
	"start":     "The task was started.",
	"start-for": "The task was started for the selected devices.",
	"stop":      "Stop was requested.",
	"suspend":   "The task was suspended.",
	"resume":    "The task was resumed.",
	"rollback":  "The revision was restored as a new revision.",
	"import":    "The task was imported.",
}
