// Package klt exports one task with all its settings to a KLT file and
// imports a task from one (the product documentation's "Exporting a task" and "Importing a
// task"), losslessly and close to what the administration server's public
// Open API says about tasks.
//
// The vendor's own KLT encoding is not publicly specified, so this package
// defines an open one: a UTF-8 JSON document whose body is the task as an
// Open API parameter tree (the KlAkOAPI typed JSON convention), with the
// public names of the administration server's API for everything that has
// one, so that a task read from a server imports with its schedule,
// devices, restart options and account, and exports in a shape the server
// knows. Only public documentation was used (see "Sources").
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
// same name race (task.Runtime.CreateWithFreeName). The task keeps the
// document's opaque fields (task.Task.Opaque), so a later export writes
// them back. The imported task
// starts by its imported schedule.
//
// # Document
//
// Keys are written in byte order with two spaces of indentation:
//
//	{
//	  "exported_at": "2026-11-22T01:02:03Z",      export time, UTC, whole seconds
//	  "format": "taskfleet-klt",
//	  "format_version": "1.2",                    MAJOR.MINOR (FormatVersion)
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
// # Sources of the public names
//
// Every public name below comes from public documentation of the
// administration server's API; a reading this package had to choose
// where a page is silent is marked "reading":
//
//   - [KSC Open API, "Task settings format"]: TASK_NAME, TASKID_PRODUCT_NAME,
//     TASKID_VERSION, TASKID_COMPONENT_NAME, TASK_ADDITIONAL_PARAMS,
//     TASK_INFO_PARAMS, DisplayName ("100 characters max."), TASKSCH_TYPE,
//     klprts-TaskScheduleSubtype, PRTS_TASK_GROUPID (-1 or absent: a task
//     for a set of devices), PRTS_EXCEPT_GROUPIDS (integers),
//     UNLOCK_PASSWORD_CRYPTED (dropped). The page marks TASKID_COMPONENT_NAME,
//     TASKID_PRODUCT_NAME, TASKID_VERSION, TASK_NAME, DisplayName,
//     TASK_ADDITIONAL_PARAMS, TASK_INFO_PARAMS, TASKSCH_TYPE and
//     klprts-TaskScheduleSubtype required for a task created with
//     Tasks.AddTask: Export writes every one of them.
//   - [KSC Open API, "Schedule types"]: the TASKSCH_TYPE ids 0-7.
//   - [KSC Automation, "Task settings format"]: TASKSCH_RUN_MISSED_FLAG,
//     TASKSCH_FIRST_EXECUTION_TIME, TASKSCH_MS_PERIOD, TASKSCH_ED_HOURS/MINS/SECS,
//     TASKSCH_EW_DAY (1 Monday .. 7 Sunday)/HOURS/MINS/SECS of type 3,
//     TASKSCH_WD_HOURS/MINS/SECS, TASKSCH_WD_DAYS (bits 1-7 Sunday to Saturday),
//     TASKSCH_EM_DAY/HOURS/MINS/SECS, TASK_START_DELTA, TASK_DISPLAY_NAME.
//   - The Open API's "List of deployment task attributes" (referred to by
//     Tasks.ProtectPassword):
//     KLTSK_RU_REBOOT_IMMEDIATELY, KLTSK_RU_REBOOT_ASK_FOR_REBOOT,
//     KLTSK_RU_REBOOT_ASK_FOR_REBOOT_PERIOD and _FORCE_REBOOT_PERIOD
//     (minutes, long), KLTSK_RU_REBOOT_MESSAGE, klprts-TaskAccountUser,
//     klprts-TaskAccountPassword (dropped).
//   - [KSC Open API, "Events notification settings"]: the event descriptor
//     names KLEVP_ND_* (KLEVP_ND_EMAIL: recipients separated by a comma;
//     KLEVP_ND_USE_EMAIL: e-mail notification on), and
//     [KSC Open API, "List of event filter attributes"]: the event type
//     KLPRCI_TaskState (a task's state changed) and the severities.
//   - The KlAkOAPI package's public sample that creates a task with
//     Tasks.AddTask (the vendor's Python package for the Open API): the
//     shape of TASK_INFO_PARAMS.KLPRSS_EVPNotifications — arrays "ERR",
//     "WRN" and "INF" of event descriptors with KLEVP_ND_EVETN_TYPE (sic),
//     KLEVP_ND_DAYS_TO_STORE_EVENT, KLEVP_ND_STORE_AT_SERVER_LOG,
//     KLEVP_ND_STORE_AT_CLIENT_LOG, KLEVP_ND_STORE_AT_CLIENT_PRES and
//     KLEVP_ND_BODY_FILTER with KLPRCI_newState (1 running, 2 suspended,
//     3 failed, 4 completed) — and klprts-TaskScheduleSubtype 256 for a
//     manual start.
//   - [KSC Linux, "Event notifications displayed by running an executable
//     file"]: the task name is at most 100 characters.
//   - The KSC Open API's description of parameter values (paramParams,
//     paramLong, paramDateTime, paramBinary, …) in the KlAkOAPI JSON
//     convention: the typed values below.
//
// # Field names
//
// Task level:
//
//	TASK_NAME                       the task type (task.Task.Type)
//	TASKID_PRODUCT_NAME             the application (Application)
//	TASKID_VERSION                  the application version (as the task has
//	                                it; Manager.Create gives a task the
//	                                type's TaskType.ApplicationVersion)
//	TASKID_COMPONENT_NAME           a server's value kept with the task, else
//	                                ExportOptions.ComponentName, else the
//	                                application (reading: no public page
//	                                lists component names; Parse maps a
//	                                value equal to the application and keeps
//	                                any other verbatim)
//	TASKSCH_TYPE, TASKSCH_*, TASK_START_DELTA, TASK_MAX_EXEC_TIME, EVENT_TYPE
//	                                the schedule (below)
//	HostList                        the devices of a devices scope: an array of
//	                                device ids (reading: plain strings, so a
//	                                list of scope.MaxListLength devices stays
//	                                within DefaultMaxValues)
//	TASK_ADDITIONAL_PARAMS          the type-specific settings by their JSON names
//	                                (typed as below), and:
//	  KLTSK_RU_REBOOT_*             the restart policy (below)
//	  klprts-TaskAccountUser        the run-as account name (absent: default)
//	TASK_INFO_PARAMS                container of:
//	  DisplayName                   the task name, at most MaxDisplayNameLength
//	                                (100) characters: Parse refuses a longer
//	                                one and Export a longer task name, both
//	                                with a *ValidationError ("name" for
//	                                Export), although task.MaxNameLength
//	                                allows 256
//	  klprts-TaskScheduleSubtype    a server's value kept with the task, else
//	                                ExportOptions.ScheduleSubtype(kind), else
//	                                DefaultScheduleSubtype (256, the public
//	                                sample's value; the pages list no
//	                                values). Parse maps 256 and keeps any
//	                                other value verbatim
//	  KLPRSS_EVPNotifications       the notification settings (below)
//	  KLTSK_ALLOW_AUTO_RANDOMIZATION the automatic randomized delay is on
//	  PRTS_TASK_GROUPID             the group of a group scope as an integer: the
//	                                id itself when it is a non-negative 32-bit
//	                                integer, else ExportOptions.GroupIDs' number
//	                                for it (an id it cannot map is refused
//	                                with a *ValidationError at "scope.group";
//	                                without GroupIDs the field is left out
//	                                and ExportReport.GroupIDsOmitted says so);
//	                                never a string. -1 for any scope that is
//	                                not a group
//	  PRTS_EXCEPT_GROUPIDS          the excluded groups, likewise (written when
//	                                all of them are integers)
//
// Taskfleet's own names, each for what the public names cannot carry
// (every one starts with TF_):
//
//	TF_SCHEDULE        the schedule in schedule's JSON encoding: it is
//	                   authoritative, because the public fields lose the
//	                   N-th weekday and event details, the period of every
//	                   N days, Wake-on-LAN, shutdown and the values kept
//	                   while an option is off
//	TF_SCOPE           the scope in scope's JSON encoding (addresses,
//	                   selections, local and group options have no public
//	                   names; informational: Commit takes the scope to use)
//	TF_RESTART         the restart policy (force-closing locked sessions
//	                   and the minutes kept while an interval is off have
//	                   no public names)
//	TF_SECURITY        task.Security (the access list): no public name
//	TASK_INFO_PARAMS.TF_DESCRIPTION  the description: no public name
//	TASK_INFO_PARAMS.TF_SUSPENDED    suspended: no public name
//
// TF_NOTIFICATIONS, written by format 1.1 and earlier, is still read (and
// is then authoritative: a KLPRSS_EVPNotifications beside it is kept only
// while it reads the same, else dropped with a WarnIgnored warning); it is
// no longer written. TF_ACCOUNT_NAME (format 1.0) and TF_COMMENT (0.x) are
// read likewise.
//
// The public fields mirror the TF_ containers: Parse refuses a document
// where a public field disagrees with its TF_ container (naming the
// public field), and builds the value from the public fields alone when
// the TF_ container is absent, as in a task read from a server.
//
// # Schedules
//
// Export writes, beside TF_SCHEDULE, the public fields of every kind
// (TASKSCH_RUN_MISSED_FLAG, TASK_START_DELTA, TASK_MAX_EXEC_TIME and
// EVENT_TYPE always):
//
//	manual            TASKSCH_TYPE 0, EVENT_TYPE ""
//	once              1, TASKSCH_MS_PERIOD 0, TASKSCH_FIRST_EXECUTION_TIME At
//	immediately       1, TASKSCH_MS_PERIOD 0, TASKSCH_FIRST_EXECUTION_TIME SavedAt
//	every N minutes   1, TASKSCH_MS_PERIOD N·60000, TASKSCH_FIRST_EXECUTION_TIME Start
//	every N hours     1, TASKSCH_MS_PERIOD N·3600000 (long beyond 32 bits), likewise
//	every N days      2, TASKSCH_ED_HOURS/MINS/SECS, TASKSCH_FIRST_EXECUTION_TIME
//	                  the start date at that time
//	days of the week  6, TASKSCH_WD_HOURS/MINS/SECS, TASKSCH_WD_DAYS
//	monthly           4, TASKSCH_EM_DAY, TASKSCH_EM_HOURS/MINS/SECS
//	N-th weekday      7 (no public detail fields: TF_SCHEDULE only)
//	event kinds       0, EVENT_TYPE the kind ("on_updates_downloaded",
//	                  "on_virus_outbreak", "on_task_completion")
//
// A server's type 3 (once a week: TASKSCH_EW_DAY, 1 Monday .. 7 Sunday,
// and TASKSCH_EW_HOURS/MINS/SECS) reads as days of the week with that one
// day. Its fields are kept verbatim, and Export writes them (type 3)
// instead of type 6 while they describe the task's schedule; once the
// schedule changes, the task's own fields. The same rule keeps the fields
// of a schedule that was not converted (below): a server's kept schedule
// fields are written back exactly while they read as the task's schedule.
//
// Readings chosen where the pages are silent: a milliseconds schedule
// (type 1, and type 5 read the same way) with period 0 starts once at
// TASKSCH_FIRST_EXECUTION_TIME; a period that is a whole number of hours
// reads as every N hours, else of minutes as every N minutes (any other
// period is refused); TASK_START_DELTA is the randomized delay interval in
// minutes (0: off or automatic, as KLTSK_ALLOW_AUTO_RANDOMIZATION says);
// TASK_MAX_EXEC_TIME is the stop-after limit in minutes (0: off); the
// wall-clock fields of types 2, 4 and 6 and the date of
// TASKSCH_FIRST_EXECUTION_TIME for type 2 are the server's local time,
// as schedule.Schedule's are; a server document of type 2 has every
// N days = 1 (the period has no public field); the EVENT_TYPE values are
// the schedule kinds' names. A server schedule the public fields do not
// describe (type 7, a task-completion event, an EVENT_TYPE this version
// does not know) imports as a manual start with a WarnScheduleNotConverted
// warning, and its fields are kept as opaque fields, written back while
// the task keeps that manual start (with the same run-missed and
// randomization options).
//
// # Notifications
//
// task.Notifications is written as TASK_INFO_PARAMS.KLPRSS_EVPNotifications,
// the container of event descriptors the Open API's task settings carry
// (the public KlAkOAPI sample shows its shape; the descriptor names are the
// "Events notification settings" page's). How the product documentation's
// notification settings map onto it is not publicly documented; this is
// the reading chosen. One descriptor for each of taskfleet's severities,
// "ERR", "WRN" and "INF", with:
//
//	KLEVP_ND_EVETN_TYPE          the history level: "" (every event) for
//	                             "Save all events"; "KLPRCI_TaskState" (a
//	                             task's state changes) for "Save events
//	                             related to task progress" (the default);
//	                             "KLPRCI_TaskState" with KLEVP_ND_BODY_FILTER
//	                             {KLPRCI_newState: 3 (failed) in ERR,
//	                             4 (completed) in WRN and INF} for "Save only
//	                             task execution results"
//	KLEVP_ND_DAYS_TO_STORE_EVENT "Store in the Administration Server database
//	                             for (days)": the retention (30 by default;
//	                             1..3650), 0 when it is off
//	KLEVP_ND_STORE_AT_CLIENT_LOG "Store in the OS event log on device"
//	                             (the Windows event log channel)
//	KLEVP_ND_STORE_AT_SERVER_LOG, KLEVP_ND_STORE_AT_CLIENT_PRES  false
//	                             (taskfleet has no such storage)
//	KLEVP_ND_USE_EMAIL           notify: true in ERR, and in WRN and INF
//	                             unless "Notify of errors only"
//	                             (ErrorsOnly); the Notifier hears of the
//	                             results these descriptors notify of
//	KLEVP_ND_EMAIL               the "Notify by email" recipients, separated
//	                             by commas ("" for the Notifier's own; at
//	                             most task.MaxEmailRecipients)
//
// Parse reads any such container: the level from the event types (any ""
// is all events, else a KLPRCI_TaskState without a filter progress, else
// one with a filter results), the first KLEVP_ND_DAYS_TO_STORE_EVENT, the
// client log if any descriptor stores there, ErrorsOnly when a descriptor
// of ERR or CRT (critical, read like ERR) sends e-mail and none of WRN and
// INF does, and the recipients of the first descriptor that sends e-mail.
// A value of the wrong type, out of range or an invalid address is refused
// at its path. The default level and retention read as the zero values
// (so a task with an explicit "progress" or 30 days comes back with ""
// and 0, which mean the same). A container with details taskfleet's
// settings do not hold — the SMS, script, SNMP or syslog channels
// (KLEVP_ND_USE_*), other event types or severities, storage in the
// server's OS event log, settings that differ between severities — gives
// the task the nearest settings, with a WarnNotificationsKept warning, and
// is kept verbatim (Import.Extra, task.Task.Opaque): Export writes it back
// unchanged while it still reads as the task's notifications, and the
// task's own container once they were changed.
//
// # Restart options
//
//	KLTSK_RU_REBOOT_IMMEDIATELY   true for restart.Restart
//	KLTSK_RU_REBOOT_ASK_FOR_REBOOT true for restart.Prompt (both false:
//	                              restart.DoNotRestart)
//	KLTSK_RU_REBOOT_ASK_FOR_REBOOT_PERIOD  repeat-prompt minutes, 0 when off
//	KLTSK_RU_REBOOT_FORCE_REBOOT_PERIOD    restart-after minutes, 0 when off
//	KLTSK_RU_REBOOT_MESSAGE       the prompt text
//
// These names, and klprts-TaskAccountUser, are reserved in
// TASK_ADDITIONAL_PARAMS: a settings field of one of these names is not
// supported.
//
// # Typed settings
//
// Declared settings keep their Open API value types in both directions,
// driven by the registered settings struct: []byte is binary, time.Time
// datetime (whole UTC seconds), int64, uint32 and uint64 long, int and
// smaller integers int (long beyond 32 bits), float64 double, float32
// float, structs and string-keyed maps params, slices arrays of their
// element's type. A field tag chooses where the Go type is ambiguous:
// klt:"date" (a time.Time at midnight UTC written as a date), klt:"long",
// klt:"int", klt:"float", klt:"double". Parse refuses a typed value of
// another type at its path; int and long are interchangeable for integer
// fields, and any number for floating-point fields. Export refuses what it
// cannot write in the declared type (a datetime with a fraction of a
// second, a uint64 beyond a signed long), so both agree on what is valid.
//
// # Open API task reads
//
// Parse also accepts the object the Open API's task-reading calls return,
// {"PxgRetVal": {…}}, so a task read from a running server can be
// brought in. Tasks.GetTaskData and GroupTaskControlApi.GetTaskByRevision
// return the settings document above (TASK_INFO_PARAMS holds the
// task-independent settings); Tasks.GetTask returns the attribute list,
// in which those attributes (DisplayName, or TASK_DISPLAY_NAME as KSC
// Automation names it, PRTS_TASK_GROUPID, …) are members of the task
// itself: Parse reads a PxgRetVal without TASK_INFO_PARAMS that way.
// Export always writes the settings document. Output values beside
// PxgRetVal are ignored with a WarnIgnored warning. ParseOptions.AnyType
// accepts a task type the registry does not have (its settings become
// opaque fields), so a console can show any task.
//
// # Opaque fields
//
// A field this version does not map — in the header, in the task, in
// TASK_INFO_PARAMS or in TASK_ADDITIONAL_PARAMS (a settings field the
// registered type does not have) — is kept verbatim, with its path, in
// Import.Extra and in Import.Task.Opaque (EncodeOpaque), with a
// WarnUnknownField warning (the first 100 get one each, the rest one
// summary warning). task.Task.Opaque is stored with the task by every
// store, so exporting the task later writes the fields back, value for
// value and type for type, without the caller carrying them; an
// ExportOptions.Extra entry replaces an opaque field of the same path. An
// opaque value must be a valid typed value all the way down: Parse refuses
// one Export could not write. Unknown fields inside our own containers
// (TF_SCHEDULE, TF_SCOPE, …) are errors: those encodings are strict. A
// server's own TASKID_COMPONENT_NAME, klprts-TaskScheduleSubtype and
// KLPRSS_EVPNotifications (when it holds more than task.Notifications) are
// kept the same way, without a WarnUnknownField warning: they are known
// fields whose values taskfleet does not model.
//
// # Secrets
//
// No secret is ever exported, encrypted or not. The run-as account's
// password is never written; its name is (klprts-TaskAccountUser).
// ExportReport.PasswordDropped says so, and Parse warns with
// WarnCredentials and returns the task with the default account and the
// name in Import.AccountName: set Import.Task.Account to re-enter the
// credentials before Commit. Every field IsSecretField names — the known
// password fields (klprts-TaskAccountPassword, UNLOCK_PASSWORD_CRYPTED,
// DeinstallationPassword, proxy_pwd) and any field whose name contains
// "password", "passwd", "passphrase", "pwd", "secret", "privatekey" or
// "private_key" — is dropped on import with a WarnCredentials warning,
// also inside a vendor container, and never written on export
// (ExportReport.SecretsDropped names any that an Extra or Opaque value
// carried). ExportReport.PrivateData and WarnPrivateData name the
// settings values that look like private data (credentials.ScanSettings),
// never the values.
//
// # Versions
//
// A document of a newer major format version is refused with a
// *VersionError (matching ErrUnsupportedVersion). A newer minor version is
// read, with WarnNewerMinor; the fields it adds are opaque fields. Older
// versions are read: format 1.1 wrote the notifications as
// TF_NOTIFICATIONS (still read) and no TASKID_COMPONENT_NAME or
// klprts-TaskScheduleSubtype; format 1.0 had no public schedule, restart
// or device list fields and named the account TF_ACCOUNT_NAME (still
// read); format 0.x kept the description in a top-level TF_COMMENT, which
// becomes TASK_INFO_PARAMS.TF_DESCRIPTION (WarnUpgraded).
//
// # Round trips and normalisation
//
// Every field of task.Task except the id, scope (Commit chooses it; it is
// recorded as SourceScope), timestamps, revisions and the password
// round-trips (the notifications' explicit defaults as their zero values,
// see "Notifications"): the import equals the exported task, and exporting it again
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
// (DefaultMaxDepth, 64), more than MaxValues values (DefaultMaxValues,
// 250,000) and a number longer than 1024 characters. With the defaults,
// Parse of any document allocates at most MaxParseAlloc (160 MiB) in
// total and holds at most MaxParseLive (128 MiB) at once;
// TestMemoryAndQuoteLimits measures the worst documents with
// runtime.MemStats.
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
// Document text quoted in an error is cut to 64 bytes, for any input. Export names task
// paths ("schedule.weekdays") and "extra[i]". Commit returns what
// task.Manager returns (task paths, ErrConflict, ErrPermission).
// *NotExportableError and *VersionError also match ErrInvalid.
//
// [KSC Open API, "Task settings format"]: https://support.kaspersky.com/help/KSC/14/KSCAPI/a00030.html
// [KSC Open API, "Schedule types"]: https://support.kaspersky.com/help/KSC/14/KSCAPI/a00028.html
// [KSC Automation, "Task settings format"]: http://certsrv.ru/klakaut.en/a00012.html
// [KSC Open API, "Events notification settings"]: https://support.kaspersky.com/help/KSC/13.1/KSCAPI/a00133.html
// [KSC Open API, "List of event filter attributes"]: https://support.kaspersky.com/help/KSC/15.2/KSCAPI/a00134.html
// [KSC Linux, "Event notifications displayed by running an executable file"]: https://support.kaspersky.com/KSCLinux/15.2/en-US/84509.htm
package klt
