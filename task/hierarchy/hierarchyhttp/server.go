package hierarchyhttp

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/taskfleet/taskfleet/internal/errs"
	"github.com/taskfleet/taskfleet/task/hierarchy"
	"github.com/taskfleet/taskfleet/task/transport/httptransport"
)

// ServeHTTP implements http.Handler: the parent side of the Link, for the
// children. Every request is authenticated (Config.Identity) before its
// body is read; the authenticated id is the child's server id, so a
// child reads only its own task set and queries and reports only as
// itself.
//
//   - GET PathTasks: the latest task set for the child (200), or 204.
//   - POST PathReport: the child's report (204). 403 when its From is
//     not the child; 404 when the child is not a child of this server;
//     400 for a malformed report.
//   - GET PathQueries?wait=SECONDS: the queries for per-device results
//     waiting for the child, held up to PollWait (204 when none).
//   - POST PathAnswer: the child's answer to one of its queries (204).
func (l *Link) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if l.cfg.Identity == nil {
		http.Error(w, "this server takes no children", http.StatusNotFound)
		return
	}
	id, err := l.cfg.Identity.Authenticate(r)
	if err != nil {
		w.Header().Set("Taskfleet-Auth-Error", authReason(err))
		http.Error(w, "unauthenticated", http.StatusUnauthorized)
		return
	}
	child := string(id)
	switch {
	case r.Method == http.MethodGet && r.URL.Path == PathTasks:
		l.serveTasks(w, child)
	case r.Method == http.MethodPost && r.URL.Path == PathReport:
		l.serveReport(w, r, child)
	case r.Method == http.MethodGet && r.URL.Path == PathQueries:
		l.serveQueries(w, r, child)
	case r.Method == http.MethodPost && r.URL.Path == PathAnswer:
		l.serveAnswer(w, r, child)
	default:
		http.Error(w, "not found", http.StatusNotFound)
	}
}

func authReason(err error) string {
	var ae *httptransport.AuthError
	if errors.As(err, &ae) {
		return ae.Reason
	}
	return httptransport.ReasonMissing
}

func (l *Link) refuse(w http.ResponseWriter, child string, code int, err error) {
	l.cfg.Logger.Warn().Str("server", l.cfg.ID).Str("child", clip(child)).Int("status", code).Err(err).Msg("hierarchy request refused")
	http.Error(w, clip(err.Error()), code)
}

func clip(s string) string {
	if len(s) > 512 {
		return s[:512] + "…"
	}
	return s
}

func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		return nil, errs.Invalid("body", "", fmt.Sprintf("must be at most %d bytes", MaxBodyBytes))
	}
	return b, nil
}

func (l *Link) serveTasks(w http.ResponseWriter, child string) {
	l.mu.Lock()
	m, ok := l.sets[child]
	l.mu.Unlock()
	if !ok {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	b, err := encodeTaskSet(m)
	if err != nil {
		l.refuse(w, child, http.StatusInternalServerError, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

func (l *Link) serveReport(w http.ResponseWriter, r *http.Request, child string) {
	b, err := readBody(w, r)
	if err != nil {
		l.refuse(w, child, http.StatusRequestEntityTooLarge, err)
		return
	}
	rep, err := decodeReport(b)
	if err != nil {
		l.refuse(w, child, http.StatusBadRequest, err)
		return
	}
	if rep.From != child {
		l.refuse(w, child, http.StatusForbidden, fmt.Errorf("report from %q sent by %q: %w", clip(rep.From), clip(child), ErrImpersonation))
		return
	}
	n := l.localNode()
	if n == nil {
		l.refuse(w, child, http.StatusServiceUnavailable, errors.New("no Node attached"))
		return
	}
	if err := n.ReceiveReport(r.Context(), rep); err != nil {
		var unknown *hierarchy.UnknownServerError
		switch {
		case errors.As(err, &unknown):
			l.refuse(w, child, http.StatusNotFound, err)
		case errors.Is(err, hierarchy.ErrInvalid):
			l.refuse(w, child, http.StatusBadRequest, err)
		default:
			l.refuse(w, child, http.StatusServiceUnavailable, err)
		}
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (l *Link) serveQueries(w http.ResponseWriter, r *http.Request, child string) {
	wait := time.Duration(0)
	if v := r.URL.Query().Get("wait"); v != "" {
		s, err := strconv.Atoi(v)
		if err != nil || s < 0 {
			l.refuse(w, child, http.StatusBadRequest, errs.Invalid("wait", clip(v), "must be a number of seconds"))
			return
		}
		wait = min(time.Duration(s)*time.Second, l.cfg.PollWait)
	}
	var timer *time.Timer
	for {
		l.mu.Lock()
		cq := l.queue(child)
		qs := cq.queue
		cq.queue = nil
		wake := cq.wake
		l.mu.Unlock()
		if len(qs) > 0 {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(qs)
			return
		}
		if wait <= 0 {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if timer == nil {
			timer = time.NewTimer(wait)
			defer timer.Stop()
		}
		select {
		case <-r.Context().Done():
			return
		case <-timer.C:
			wait = 0
		case <-wake:
		}
	}
}

func (l *Link) serveAnswer(w http.ResponseWriter, r *http.Request, child string) {
	b, err := readBody(w, r)
	if err != nil {
		l.refuse(w, child, http.StatusRequestEntityTooLarge, err)
		return
	}
	a, err := decodeAnswer(b)
	if err != nil {
		l.refuse(w, child, http.StatusBadRequest, err)
		return
	}
	l.mu.Lock()
	p := l.waiting[a.ID]
	l.mu.Unlock()
	switch {
	case p == nil:
		w.WriteHeader(http.StatusNoContent) // timed out meanwhile: nothing to do
		return
	case p.child != child:
		l.refuse(w, child, http.StatusForbidden, fmt.Errorf("answer to a query for %q sent by %q: %w", p.child, clip(child), ErrImpersonation))
		return
	}
	select {
	case p.done <- a:
	default:
	}
	w.WriteHeader(http.StatusNoContent)
}
