// Package klt exports one task with all its settings to a KLT file and
// imports a task from one (the product documentation's "Exporting a task" and "Importing a
// task"), losslessly and close to what the administration server's public
// Open API says about tasks.
//
// The vendor's own KLT encoding is not publicly specified, so this package
// defines an open one: a UTF-8 JSON document whose body is the task as an
// Open API parameter tree, with the field names of the public KSC Open API
// "Task settings format" where one exists. Only public documentation (the
// KSC Open API reference) was used for those names.
//
// # Export and import
//
//	file, report, err := klt.Export(t, taskType, klt.ExportOptions{Clock: clk})
//	imp, err := klt.Parse(r, registry, klt.ParseOptions{})          // step 1: nothing stored
//	show(imp.Task, imp.Warnings, imp.SourceScope)
//	imp.Task.Account, _ = credentials.Specify(imp.AccountName, pw, sealer) // optional
//	created, err := imp.Commit(ctx, manager, actor, chosenScope)    // step 2
//
// Export refuses Administration Server tasks and types marked
// NotExportable with a *NotExportableError (the product documentation: "Administration
// Server tasks are also unavailable for export"). Parse validates
// everything it can without storing anything, so a console can show what
// will be imported. Commit creates the task in the scope the administrator
// picks — a group, devices, addresses or a device selection — and a name
// that is taken gets the next free " (n)" index, also when imports of the
// same name race (task.Manager.CreateWithFreeName). The imported task
// starts by its imported schedule.
//
// # Document
//
// Keys are written in byte order with two spaces of indentation:
//
//	{
//	  "exported_at": "2026-11-22T01:02:03Z",      export time, UTC, whole seconds
//	  "format": "taskfleet-klt",
//	  "format_version": "1.0",                    MAJOR.MINOR (FormatVersion)
//	  "library_version": "0.1.0",                 LibraryVersion
//	  "task": {"type": "params", "value": {…}}    the task, below
//	}
//
// The task and everything in it use the Open API's typed values: strings,
// booleans, 32-bit integers (paramInt), arrays and null are plain JSON;
// other values are objects {"type": T, "value": V} with T one of "params"
// (a container of named values), "long" (64-bit integer), "double",
// "float", "datetime" ("YYYY-MM-DDTHH:MM:SSZ"), "date" ("YYYY-MM-DD") and
// "binary" (base64). Our packages' stable JSON encodings are carried in
// that form: objects become params, integers beyond 32 bits long, other
// numbers double (with their exact text), whole-second schedule instants
// datetime; decoding reverses it exactly.
//
// # Field names
//
// Public names of the Open API "Task settings format":
//
//	TASK_NAME                       the task type (task.Task.Type)
//	TASKID_PRODUCT_NAME             the application (Application)
//	TASKID_VERSION                  the application version
//	TASKSCH_TYPE                    the Open API schedule type id (ScheduleType)
//	TASKSCH_RUN_MISSED_FLAG         run missed tasks (Schedule.RunMissed)
//	TASK_ADDITIONAL_PARAMS          the type-specific settings, by their JSON names
//	TASK_INFO_PARAMS                container of:
//	  DisplayName                   the task name
//	  KLTSK_ALLOW_AUTO_RANDOMIZATION the automatic randomized delay is on
//	  PRTS_TASK_GROUPID             the group of a group scope: paramInt when the
//	                                id is a 32-bit decimal number, else a string
//	  PRTS_EXCEPT_GROUPIDS          the excluded groups, likewise
//
// Taskfleet's own names, for settings the public format has no name for
// (every one starts with TF_):
//
//	TF_SCHEDULE        params: the schedule, in schedule's JSON encoding
//	TF_SCOPE           params: the scope the task had, in scope's JSON encoding
//	                   (informational: Commit takes the scope to use)
//	TF_RESTART         params: the restart policy, in restart's JSON encoding
//	TF_NOTIFICATIONS   params: task.Notifications
//	TF_SECURITY        params: task.Security (the access list)
//	TF_ACCOUNT_NAME    string: the run-as account name (absent: default account)
//	TASK_INFO_PARAMS.TF_DESCRIPTION  string: the description (absent when empty)
//	TASK_INFO_PARAMS.TF_SUSPENDED    bool: the task is suspended (absent when not)
//
// TF_SCHEDULE is authoritative; TASKSCH_TYPE, TASKSCH_RUN_MISSED_FLAG and
// KLTSK_ALLOW_AUTO_RANDOMIZATION mirror it for Open API readers, and Parse
// refuses a document where they disagree. Likewise PRTS_TASK_GROUPID and
// PRTS_EXCEPT_GROUPIDS must agree with TF_SCOPE. TASKSCH_TYPE is 5 for
// every N minutes or hours, 2 for every N days, 6 for days of the week, 4
// for monthly, 7 for the N-th weekday and 0 (the empty schedule) for the
// other kinds.
//
// TASK_MAX_EXEC_TIME and TASK_START_DELTA are public names, but the public
// documentation used does not state their units, so this version neither
// writes nor interprets them: the stop-after limit and the randomized
// delay interval travel in TF_SCHEDULE, and these fields, when a document
// has them, are kept as unknown fields.
//
// # Open API task reads
//
// Parse also accepts the object the Open API's task-reading calls return,
// {"PxgRetVal": {…task settings…}}, so a task read from a running server
// can be brought in. The public fields above are used (a group in
// PRTS_TASK_GROUPID becomes the SourceScope; -1 means none); the schedule
// needs TF_SCHEDULE, so without it the task is imported with a manual
// start, run-missed and automatic randomization from the public flags, and
// a WarnScheduleNotConverted warning. Every other field (TASK_UNIQUE_ID,
// TASKSCH_*, KLPRSS_EVPNotifications, …) is kept verbatim as an unknown
// field; output values beside PxgRetVal are ignored with a warning.
//
// # Unknown fields
//
// A field this version does not know — in the header, in the task, in
// TASK_INFO_PARAMS or in TASK_ADDITIONAL_PARAMS (a settings field the
// registered type does not have) — is kept verbatim in Import.Extra, with
// its path, and a WarnUnknownField warning. Export writes
// ExportOptions.Extra back at those paths, so export → import → export
// loses nothing. Unknown fields inside our own containers (TF_SCHEDULE,
// TF_SCOPE, …) are errors: those encodings are strict.
//
// # Secrets
//
// The password of the run-as account is never exported; its name is
// (TF_ACCOUNT_NAME). ExportReport.PasswordDropped says so, and Parse warns
// with WarnCredentials and returns the task with the default account and
// the name in Import.AccountName: set Import.Task.Account to re-enter the
// credentials before Commit. ExportReport.PrivateData and WarnPrivateData
// name the settings values that look like private data
// (credentials.ScanSettings), never the values.
//
// # Versions
//
// A document of a newer major format version is refused with a
// *VersionError (matching ErrUnsupportedVersion). A newer minor version is
// read, with WarnNewerMinor; the fields it adds are unknown fields. Older
// versions are upgraded (WarnUpgraded): format 0.x kept the description in
// a top-level TF_COMMENT, which becomes TASK_INFO_PARAMS.TF_DESCRIPTION.
//
// # Round trips and normalisation
//
// Every field of task.Task except the id, scope (Commit chooses it; it is
// recorded as SourceScope), timestamps, revisions and the password
// round-trips: the import equals the exported task, and exporting it again
// (with its scope and Extra, at the same time) gives the same bytes.
// Normalize gives a document's canonical form — keys in byte order, two-space
// indentation, exported_at removed — to compare documents written at
// different times or by other tools.
//
// # Limits
//
// Parse reads the input as a stream through its own JSON scanner and
// refuses, before the document is held in memory: more than
// ParseOptions.MaxSize bytes (DefaultMaxSize, 16 MiB), invalid UTF-8, a
// key repeated in an object, nesting deeper than MaxDepth
// (DefaultMaxDepth, 64) and more than MaxValues values (DefaultMaxValues,
// 250,000). With the defaults a hostile document costs at most about 64 MiB
// of allocations in total.
//
// # Errors
//
// Bad input is a *ValidationError or ValidationErrors matching ErrInvalid.
// Field is the dotted path in the document: for a value Parse rejects, the
// path of params keys without the typed wrappers
// ("task.TF_SCHEDULE.every", "task.TASK_INFO_PARAMS.DisplayName",
// "task.TASK_ADDITIONAL_PARAMS.max_file_size_mb", "PxgRetVal.TASK_NAME");
// for a document the JSON scanner refuses (duplicate key, depth, syntax),
// the literal JSON path ("task.value.TASK_INFO_PARAMS.value.DisplayName").
// Document text quoted in an error is cut to 64 bytes. Export names task
// paths ("schedule.weekdays") and "extra[i]". Commit returns what
// task.Manager returns (task paths, ErrConflict, ErrPermission).
// *NotExportableError and *VersionError also match ErrInvalid.
package klt
