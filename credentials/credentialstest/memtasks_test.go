package credentialstest_test

import (
	"bytes"
	"testing"

	"github.com/taskfleet/taskfleet/credentials"
	"github.com/taskfleet/taskfleet/credentials/credentialstest"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	sealer, err := credentials.NewAESGCM(credentials.AESGCMConfig{
		Keys:        []credentials.Key{{ID: "k1", Material: bytes.Repeat([]byte{1}, credentials.KeySize)}},
		ActiveKeyID: "k1",
	})
	if err != nil {
		t.Fatal(err)
	}
	credentialstest.RunTaskAccounts(t, sealer, func(t *testing.T, tasks []credentials.TaskAccount) credentials.TaskAccounts {
		return credentialstest.NewMemTaskAccounts(tasks...)
	})
}
