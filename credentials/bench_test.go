package credentials_test

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/taskfleet/taskfleet/credentials"
	"github.com/taskfleet/taskfleet/credentials/credentialstest"
)

func benchSealer(b *testing.B) *credentials.AESGCM {
	b.Helper()
	s, err := credentials.NewAESGCM(credentials.AESGCMConfig{
		Keys:        []credentials.Key{{ID: "k1", Material: bytes.Repeat([]byte{1}, credentials.KeySize)}},
		ActiveKeyID: "k1",
	})
	if err != nil {
		b.Fatal(err)
	}
	return s
}

func BenchmarkSeal(b *testing.B) {
	s := benchSealer(b)
	pw := credentials.NewSecret("Corr3ct-Horse-Battery!")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Seal(pw); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpen(b *testing.B) {
	s := benchSealer(b)
	sealed, err := s.Seal(credentials.NewSecret("Corr3ct-Horse-Battery!"))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Open(sealed); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseAndOpenText(b *testing.B) {
	s := benchSealer(b)
	sealed, _ := s.Seal(credentials.NewSecret("Corr3ct-Horse-Battery!"))
	text, _ := sealed.MarshalText()
	b.ReportAllocs()
	for b.Loop() {
		v, err := credentials.ParseSealed(string(text))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.Open(v); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWizard100k runs the whole wizard (step 1, step 2 with a choice
// for every pending task, report) over 100,000 tasks in the in-memory
// store, every task with its own ciphertext (the worst case for the
// comparison cache): 60% carry the previous password (changed in step 1),
// 10% already the new one, 20% another password (half enforced, half
// switched to the default account in step 2) and 10% another account.
func BenchmarkWizard100k(b *testing.B) {
	const n = 100_000
	s := benchSealer(b)
	tasks := make([]credentials.TaskAccount, n)
	for i := range tasks {
		name, pw := `CORP\svc`, "old-password"
		switch r := i % 10; {
		case r == 6:
			pw = "new-password"
		case r == 7 || r == 8:
			pw = fmt.Sprint("other-", i)
		case r == 9:
			name = `CORP\someone`
		}
		a, err := credentials.Specify(name, credentials.NewSecret(pw), s)
		if err != nil {
			b.Fatal(err)
		}
		tasks[i] = credentials.TaskAccount{TaskID: fmt.Sprintf("task-%06d", i), TaskName: fmt.Sprint("Task ", i), Revision: 1, Account: a}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		store := credentialstest.NewMemTaskAccounts(tasks...)
		w, err := credentials.NewWizard(credentials.WizardConfig{Tasks: store, Sealer: s})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		ch, err := w.Start(b.Context(), credentials.NewCredentials{
			AccountName:      `corp\SVC`,
			NewPassword:      credentials.NewSecret("new-password"),
			PreviousPassword: credentials.NewSecret("old-password"),
		})
		if err != nil {
			b.Fatal(err)
		}
		choices := map[string]credentials.Action{}
		for j, p := range ch.Pending() {
			if j%2 == 0 {
				choices[p.TaskID] = credentials.ActionEnforce
			} else {
				choices[p.TaskID] = credentials.ActionDeleteCredentials
			}
		}
		rep, err := ch.Apply(b.Context(), choices)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		c := rep.Counts()
		if len(rep.Results) != n*9/10 || c[credentials.OutcomeChanged] != n*8/10 || c[credentials.OutcomeAlreadyDone] != n/10 {
			b.Fatalf("unexpected report: %d results, %v", len(rep.Results), c)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "tasks/s")
}

func BenchmarkScanSettings(b *testing.B) {
	settings := map[string]any{
		"package": `C:\Program Files\Vendor\AgentSetup_2026-01-Release-x64.msi`,
		"args":    []string{"/quiet", "/norestart", "SERVER=https://deploy.corp.example", "TOKEN=Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MEFCQ0RFRkdI"},
		"env":     map[string]string{"LOG_LEVEL": "debug", "DB_PASSWORD": "${DB_PASSWORD}"},
		"restart": map[string]any{"action": "prompt", "minutes": 30},
	}
	b.ReportAllocs()
	for b.Loop() {
		if len(credentials.ScanSettings(settings)) != 1 {
			b.Fatal("expected one finding")
		}
	}
}
