// Package console is an embeddable administration console for taskfleet:
// an http.Handler a host mounts in its own server to see and run tasks
// (the product documentation's task list, task properties, results,
// revision history, start and stop, export and import).
//
//	c, err := console.New(console.Config{
//		Manager:   manager,
//		Actor:     func(r *http.Request) (task.Actor, error) { return myLogin(r) },
//		Prefix:    "/console",
//		Inventory: inv,           // optional: Explain and device time zones
//		Location:  serverZone,    // the Administration Server's zone
//		Engine:    server,        // optional: the runtime's counters
//		Hierarchy: node,          // optional: statistics from secondary servers
//	})
//	mux.Handle("/console/", c)
//
// Pages are rendered on the server with html/template; the stylesheet and
// one small script are embedded with embed. There is no build step and
// nothing is loaded from another site, so the console works on a machine
// without internet access. Every page works without JavaScript; with it, a
// task page fetches its statistics and results every Config.Refresh.
//
// # Pages and actions
//
//	GET  /                          tasks grouped by application and type;
//	                                filters: app, type, kind (local, group,
//	                                global, server), group, state (running,
//	                                suspended, idle: applied to each page,
//	                                so a page may be shorter), name; paged
//	GET  /tasks/{id}                settings (secrets redacted), scope with
//	                                ?explain=DEVICE, schedule with the next
//	                                activations in the server's zone and in
//	                                ?zone_device=DEVICE's zone (clock
//	                                changes marked), statistics, results
//	                                paged (?after=) and filtered (?state=),
//	                                the latest revisions
//	GET  /tasks/{id}/live           the statistics and results fragment the
//	                                script refreshes
//	GET  /tasks/{id}/devices/{dev}  one device's result and run history
//	GET  /tasks/{id}/compare?a=&b=  field-by-field diff of two revisions,
//	                                with roll back
//	GET  /tasks/{id}/export         the task as a KLT file
//	GET  /import                    import, step 1: choose a file
//	POST /import                    step 1: parse and preview (nothing stored)
//	POST /import/commit             step 2: create the task in the chosen scope
//	POST /tasks/{id}/start          start now
//	POST /tasks/{id}/start-for      start for selected devices
//	POST /tasks/{id}/stop           stop
//	POST /tasks/{id}/suspend        suspend
//	POST /tasks/{id}/resume         resume
//	POST /tasks/{id}/rollback       restore a revision as a new revision
//
// # Security
//
// Config.Actor maps a request to the host's user; an error answers 401.
// Every page and action calls the Manager with that actor, so the
// Manager's Authorizer (the task's or its group's security settings)
// decides: a user who may not read a task gets 403 and a page that says
// nothing about the task; a refused action is 403 too.
//
// State-changing requests are POSTs, checked twice against cross-site
// request forgery: http.CrossOriginProtection refuses cross-origin browser
// requests (Sec-Fetch-Site, Origin), and every form carries a token, an
// HMAC of the actor and a random session cookie (SameSite=Strict) under
// Config.CSRFKey, so a token is worthless for another user or session.
// Pages are sent with a Content-Security-Policy that allows only the
// console's own script and forbids framing.
//
// Nothing secret is rendered: the run-as account shows its name and
// whether a password is set; settings values that credentials.ScanSettings
// flags, Secret values and sealed blobs show as "[redacted]"; revision
// diffs come redacted from the Manager; KLT files never hold passwords.
// An import may re-enter the run-as password when Config.Sealer is set: it
// is sealed at once and never shown, logged or echoed in an error.
//
// # Scale
//
// Statistics come from the store's counters (Manager.Statistics) and
// results are read one page at a time, so a task page costs the same for
// ten devices and for a million: BenchmarkTaskPage renders the page of a
// 1,000,000-device task.
//
// # Errors
//
// Bad input (query parameters, form fields, KLT files) is answered 400 with
// the validation message naming the field; ErrNotFound 404; ErrConflict
// (someone changed the task since the page was loaded) 409; other errors
// 500, logged to Config.Logger and not shown.
package console
