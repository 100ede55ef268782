// Package hierarchyhttp is the link between Administration Servers over
// HTTPS: a secondary or virtual server connects out to its parent (so it
// may sit behind NAT), authenticates with its own client certificate, and
// through that one outgoing connection receives its inherited tasks,
// delivers its reports and answers its parent's requests for per-device
// results.
//
// It reuses the device channel's identity layer (package
// task/transport/httptransport): the parent authenticates every request
// with an httptransport.Identity (httptransport.MTLS with CommonName: the
// verified certificate's common name is the child's server id) before it
// reads the body, and serves with httptransport.ServerTLS (TLS 1.3,
// client certificates verified against the fleet's CA).
//
// # Setup
//
// Every server has one Link. The primary mounts it in its HTTPS server;
// a secondary gives it its parent's URL and an http.Client carrying its
// own certificate, and mounts it too when it has children of its own:
//
//	link, _ := hierarchyhttp.New(hierarchyhttp.Config{
//		ID: "s-de", ParentURL: "https://primary:8443/hierarchy", HTTPClient: mtlsClient,
//		Identity: httptransport.MTLS{Device: httptransport.CommonName},
//	})
//	node, _ := hierarchy.Open(ctx, hierarchy.Config{ID: "s-de", Link: link, Store: store, ...})
//	link.Attach(node)
//	sync, _ := node.Start(ctx, hierarchy.SyncConfig{}) // pull, distribute, report; answer the parent's queries (Link.Serve)
//	mux.Handle("/hierarchy/", http.StripPrefix("/hierarchy", link)) // for its own children
//
// # Protocol
//
// Relative to where the Link is mounted:
//
//   - GET /v1/hierarchy/tasks: the latest task set the parent's Node
//     sent the authenticated child (200, JSON), or 204 when none. Task
//     settings travel as JSON and are decoded into the task type
//     registered on the child, unknown fields refused.
//   - POST /v1/hierarchy/report: the child's report (204). The report's
//     From must be the authenticated child: a server can never report
//     for another (403, ErrImpersonation). 404 for a server that is not a
//     child, 400 for a malformed report, 413 over MaxBodyBytes.
//   - GET /v1/hierarchy/queries?wait=SECONDS: the long poll on which the
//     child receives the parent's queries for per-device results (held up
//     to Config.PollWait; 204 when none).
//   - POST /v1/hierarchy/answer: the child's answer to one of its own
//     queries (a page, or an error kind); an answer to another child's
//     query is 403.
//
// A request without a valid identity gets 401 with the reason in the
// Taskfleet-Auth-Error header and changes nothing.
//
// # Errors and retries
//
// A Link call fails with hierarchy.ErrUnreachable (so ErrRetryable) when
// the parent cannot be reached or answers 5xx, httptransport.
// ErrUnauthenticated on 401, ErrImpersonation on 403, ErrRefused
// (ErrInvalid) on 400 and 413, hierarchy.ErrNotFound on 404. Nothing is
// queued on the child: every task set and report is a complete state with
// a version, and the sync loop (hierarchy.Node.Start) retries with
// jittered backoff. A query for per-device results waits for the child's
// next poll and then Config.QueryTimeout for its answer; at most
// MaxPendingQueries wait per child.
//
// # Limits
//
// Bodies are read up to MaxBodyBytes; a task set holds at most MaxTasks
// tasks, a report MaxFigures figures, an answer MaxPageResults results;
// decoders refuse unknown fields and trailing data (FuzzDecode).
package hierarchyhttp
