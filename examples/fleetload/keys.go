package main

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"sync"

	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/task/transport/httptransport"
)

// fileKeys is a durable httptransport.KeyStore for the load test: the
// in-memory store, with every change appended to a file (one JSON record
// per line; only the keys' hashes), replayed at start. The page cache
// keeps it across a SIGKILL of the process.
type fileKeys struct {
	*httptransport.MemKeyStore
	mu sync.Mutex
	f  *os.File
	w  *bufio.Writer
}

type keyLine struct {
	Delete bool                    `json:"delete,omitempty"`
	Device scope.DeviceID          `json:"device"`
	Record httptransport.KeyRecord `json:"record"`
}

func openKeys(path string) (*fileKeys, error) {
	k := &fileKeys{MemKeyStore: httptransport.NewMemKeyStore()}
	if f, err := os.Open(path); err == nil {
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		ctx := context.Background()
		for sc.Scan() {
			var l keyLine
			if json.Unmarshal(sc.Bytes(), &l) != nil {
				continue // a line cut by the kill
			}
			if l.Delete {
				_ = k.MemKeyStore.DeleteKey(ctx, l.Device)
				continue
			}
			old, err := k.MemKeyStore.Key(ctx, l.Device)
			var expect httptransport.Hash
			if err == nil {
				expect = old.Hash
			}
			_ = k.MemKeyStore.PutKey(ctx, httptransport.PutKeyParams{Record: l.Record, Expect: expect})
		}
		f.Close()
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	k.f, k.w = f, bufio.NewWriter(f)
	return k, nil
}

func (k *fileKeys) log(l keyLine) error {
	b, _ := json.Marshal(l)
	k.mu.Lock()
	defer k.mu.Unlock()
	_, _ = k.w.Write(append(b, '\n'))
	return k.w.Flush() // to the page cache: survives a SIGKILL
}

// PutKey implements httptransport.KeyStore.
func (k *fileKeys) PutKey(ctx context.Context, p httptransport.PutKeyParams) error {
	if err := k.MemKeyStore.PutKey(ctx, p); err != nil {
		return err
	}
	return k.log(keyLine{Device: p.Record.Device, Record: p.Record})
}

// DeleteKey implements httptransport.KeyStore.
func (k *fileKeys) DeleteKey(ctx context.Context, d scope.DeviceID) error {
	if err := k.MemKeyStore.DeleteKey(ctx, d); err != nil {
		return err
	}
	return k.log(keyLine{Delete: true, Device: d})
}
