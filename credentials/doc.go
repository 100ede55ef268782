// Package credentials implements the run-as account of a task, with its
// password sealed at rest, the change-password wizard, and a warning helper
// for private data in task settings.
//
// # Concepts
//
// An Account is the product documentation's "Account settings": the default account (the
// zero Account; the task runs under the account of the application that
// performs it) or a specified account, a name and a password. The password
// is held as a Sealed value, never in plaintext:
//
//	sealer, _ := credentials.NewAESGCM(credentials.AESGCMConfig{
//		Keys:        []credentials.Key{{ID: "2026-01", Material: key32}},
//		ActiveKeyID: "2026-01",
//	})
//	acct, err := credentials.Specify(`CORP\svc`, credentials.NewSecret(pw), sealer)
//
// A Secret is a plaintext password in memory; it prints, logs and marshals
// as [REDACTED] on every path (fmt verbs, JSON, text, zerolog, slog, cmp
// diffs) and only Reveal returns the plaintext.
//
// # Sealing and key rotation
//
// Sealer is the interface; AESGCM implements it with AES-256-GCM and a
// keyring of host-supplied 32-byte keys, one active. The key id travels
// with the ciphertext (and is authenticated), so old passwords keep opening
// after a new key becomes active; Reseal moves them to the active key.
// Sealed has stable binary and text encodings (see Sealed), JSON, and
// database/sql Valuer/Scanner support; the decoders bound their input and
// are fuzzed.
//
// # The change-password wizard
//
// Wizard follows the product documentation's three steps: Start (new credentials, optional
// previous password; tasks whose password is the previous one change
// automatically), Change.Apply (per remaining task: ActionDeleteCredentials,
// ActionEnforce or ActionNone) and the Report. Tasks are reached through the
// small TaskAccounts interface (list by account name, get, compare-and-set);
// credentialstest has an in-memory implementation and the conformance suite
// RunTaskAccounts. Local tasks are never changed. Every change is one
// compare-and-set of the whole account, so a task never holds half a
// credential; a rerun reports finished tasks as already done.
// TaskAccounts must list only tasks the wizard's user may modify: the
// wizard compares their passwords with what the user typed, so listing a
// task the user may only read would let the user test password guesses.
// The wizard logs the opaque reference of its run (Change.Ref), never the
// account name, which may be a mistyped password.
//
// # Private data in settings
//
// ScanSettings walks a task's settings and reports the JSON paths (never the
// values) of password-like fields, URL credentials, embedded passwords,
// private keys, known token formats and random-looking tokens, and of every
// field marked with the struct tag `taskfleet:"secret"` (SecretTag). The
// task package redacts what it reports from revision diffs and never
// quotes it in validation errors.
//
// # Errors
//
// Bad input is a *ValidationError or ValidationErrors (the shared taskfleet
// vocabulary, re-exported) matching ErrInvalid, naming the field; a
// password is never echoed in an error, and neither is an account name (a
// mistyped name field may hold a password). Opening a sealed password fails
// with errors matching ErrSealed and one of ErrUnknownKey, ErrTampered or
// ErrMalformed. TaskAccounts implementations report ErrNotFound and
// ErrConflict.
//
// # Concurrency
//
// Secret, Sealed and Account are immutable values. AESGCM and Wizard are
// safe for concurrent use; a Change (one wizard run) is not.
package credentials
