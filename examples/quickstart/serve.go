package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/console"
)

// serveConsole serves the administration console (package task/console)
// on addr after the simulated week, and keeps the fleet going: every
// second of wall time the simulated clock moves one step (five minutes),
// so a task started in the console runs on the simulated devices and its
// statistics change on the page. It returns when ctx is done or the
// listener fails.
//
// The quickstart has no login: every request acts as "admin". A host
// passes its own Actor function (see package task/console).
func serveConsole(ctx context.Context, res *outcome, addr string, out io.Writer) error {
	s := res.sim
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		return err
	}
	c, err := console.New(console.Config{
		Manager:   s.m,
		Actor:     func(*http.Request) (task.Actor, error) { return task.Actor{ID: "admin"}, nil },
		Prefix:    "/console",
		Inventory: s.inv,
		Location:  berlin,
		Clock:     s.Clock,
		Engine:    s.srv,
	})
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/console/", c)
	mux.Handle("/{$}", http.RedirectHandler("/console/", http.StatusFound))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\nConsole: http://%s/console/ (the simulated clock moves 5 minutes a second; Ctrl-C stops)\n", ln.Addr())

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if err := s.Step(ctx, step, time.Minute); err != nil && ctx.Err() == nil {
				fmt.Fprintln(out, "quickstart: the simulated fleet stopped:", err)
				return
			}
		}
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
