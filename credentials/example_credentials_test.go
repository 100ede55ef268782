package credentials_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	"github.com/taskfleet/taskfleet/credentials"
	"github.com/taskfleet/taskfleet/credentials/credentialstest"
)

// hostKey stands for key material the host loads from its secret store.
func hostKey(b byte) []byte { return bytes.Repeat([]byte{b}, credentials.KeySize) }

// Sealing a run-as account's password with the host's key, and what every
// output path shows of it.
func ExampleSpecify() {
	sealer, err := credentials.NewAESGCM(credentials.AESGCMConfig{
		Keys:        []credentials.Key{{ID: "2026-01", Material: hostKey(1)}},
		ActiveKeyID: "2026-01",
	})
	if err != nil {
		panic(err)
	}
	password := credentials.NewSecret("s3cret!")
	acct, err := credentials.Specify(`CORP\svc-backup`, password, sealer)
	if err != nil {
		panic(err)
	}
	fmt.Printf("%v %q %+v\n", password, password, password)
	fmt.Println(acct.Name, acct.Password.KeyID(), acct.IsDefault())

	pw, err := sealer.Open(acct.Password)
	if err != nil {
		panic(err)
	}
	fmt.Println(pw.Equal(password))

	js, _ := json.Marshal(credentials.Default())
	fmt.Println(string(js))
	// Output:
	// [REDACTED] "[REDACTED]" [REDACTED]
	// CORP\svc-backup 2026-01 false
	// true
	// {}
}

// Rotating keys: add the new key, make it active, reseal, then retire the
// old key.
func ExampleReseal() {
	old, _ := credentials.NewAESGCM(credentials.AESGCMConfig{
		Keys: []credentials.Key{{ID: "2025", Material: hostKey(1)}}, ActiveKeyID: "2025",
	})
	stored, _ := old.Seal(credentials.NewSecret("s3cret!"))

	rotated, _ := credentials.NewAESGCM(credentials.AESGCMConfig{
		Keys:        []credentials.Key{{ID: "2025", Material: hostKey(1)}, {ID: "2026", Material: hostKey(2)}},
		ActiveKeyID: "2026",
	})
	fmt.Println(rotated.NeedsReseal(stored))
	resealed, changed, err := credentials.Reseal(rotated, stored)
	fmt.Println(resealed.KeyID(), changed, err)
	// Output:
	// true
	// 2026 true <nil>
}

// The change-password wizard: step 1 replaces the password where the
// previous one matches, step 2 applies a choice per remaining task, step 3
// reports per task.
func ExampleWizard() {
	ctx := context.Background()
	sealer, _ := credentials.NewAESGCM(credentials.AESGCMConfig{
		Keys: []credentials.Key{{ID: "k1", Material: hostKey(1)}}, ActiveKeyID: "k1",
	})
	acct := func(pw string) credentials.Account {
		a, _ := credentials.Specify(`CORP\svc`, credentials.NewSecret(pw), sealer)
		return a
	}
	store := credentialstest.NewMemTaskAccounts(
		credentials.TaskAccount{TaskID: "t1", TaskName: "Update databases", Revision: 1, Account: acct("old")},
		credentials.TaskAccount{TaskID: "t2", TaskName: "Virus scan", Revision: 1, Account: acct("typo")},
		credentials.TaskAccount{TaskID: "t3", TaskName: "Inventory", Revision: 1, Account: acct("stale")},
		credentials.TaskAccount{TaskID: "t4", TaskName: "Local task", Revision: 1, Account: acct("old"), Local: true},
	)
	wizard, _ := credentials.NewWizard(credentials.WizardConfig{Tasks: store, Sealer: sealer})

	// Step 1.
	change, err := wizard.Start(ctx, credentials.NewCredentials{
		AccountName:      `corp\svc`,
		NewPassword:      credentials.NewSecret("new"),
		PreviousPassword: credentials.NewSecret("old"),
	})
	if err != nil {
		panic(err)
	}
	for _, p := range change.Pending() {
		fmt.Println("choose for", p.TaskID, p.Reason)
	}
	// Step 2.
	report, err := change.Apply(ctx, map[string]credentials.Action{
		"t2": credentials.ActionEnforce,
		"t3": credentials.ActionDeleteCredentials,
	})
	if err != nil {
		panic(err)
	}
	// Step 3.
	for _, r := range report.Results {
		fmt.Println(r.TaskID, r.Action, r.Outcome)
	}
	// Output:
	// choose for t2 previous_password_mismatch
	// choose for t3 previous_password_mismatch
	// t1 replace changed
	// t2 enforce changed
	// t3 delete_credentials changed
}

// Warning about private data in task settings.
func ExampleScanSettings() {
	settings := map[string]any{
		"package":        "setup.msi",
		"admin_password": "hunter2",
		"args":           []string{"/quiet", "https://deploy:pa55@repo.corp.example/x"},
		"db_password":    "${DB_PASSWORD}", // a placeholder is fine
	}
	for _, f := range credentials.ScanSettings(settings) {
		fmt.Println(f)
	}
	// Output:
	// admin_password: secret_name
	// args[1]: url_credentials
}
