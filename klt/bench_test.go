package klt_test

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/taskfleet/taskfleet/klt"
	"github.com/taskfleet/taskfleet/scope"
)

// BenchmarkExport exports one task with every setting used.
func BenchmarkExport(b *testing.B) {
	bd := setup(b)
	x := fullTask(b, bd.seal)
	tt := lookup(b, bd.reg, x)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := klt.Export(x, tt, klt.ExportOptions{Time: exportTime}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParse parses and validates one such file (step 1).
func BenchmarkParse(b *testing.B) {
	bd := setup(b)
	x := fullTask(b, bd.seal)
	doc, _, err := klt.Export(x, lookup(b, bd.reg, x), klt.ExportOptions{Time: exportTime})
	must(b, err)
	b.SetBytes(int64(len(doc)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := klt.Parse(bytes.NewReader(doc), bd.reg, klt.ParseOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkImport parses and commits one file per iteration into a
// manager on the in-memory store (steps 1 and 2, distinct names).
func BenchmarkImport(b *testing.B) {
	bd := setup(b)
	x := fullTask(b, nil)
	tt := lookup(b, bd.reg, x)
	sc := scope.Scope{Kind: scope.Group, Group: "office"}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		x.Name = fmt.Sprintf("Scan %07d", i)
		doc, _, err := klt.Export(x, tt, klt.ExportOptions{Time: exportTime})
		must(b, err)
		b.StartTimer()
		imp, err := klt.Parse(bytes.NewReader(doc), bd.reg, klt.ParseOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := imp.Commit(bd.ctx, bd.m, bd.admin, sc); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkImport10000Files imports 10,000 files (parse, validate and
// commit each, distinct names) into an empty manager per iteration, and
// reports the time per file.
func BenchmarkImport10000Files(b *testing.B) {
	const n = 10_000
	bd := setup(b)
	x := fullTask(b, nil)
	tt := lookup(b, bd.reg, x)
	docs := make([][]byte, n)
	for i := range docs {
		x.Name = fmt.Sprintf("Scan %05d", i)
		doc, _, err := klt.Export(x, tt, klt.ExportOptions{Time: exportTime})
		must(b, err)
		docs[i] = doc
	}
	sc := scope.Scope{Kind: scope.Group, Group: "office"}
	b.ReportAllocs()
	var total time.Duration
	for b.Loop() {
		b.StopTimer()
		fresh := setup(b)
		b.StartTimer()
		t0 := time.Now()
		for _, doc := range docs {
			imp, err := klt.Parse(bytes.NewReader(doc), fresh.reg, klt.ParseOptions{})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := imp.Commit(fresh.ctx, fresh.m, fresh.admin, sc); err != nil {
				b.Fatal(err)
			}
		}
		total += time.Since(t0)
	}
	b.ReportMetric(float64(total.Nanoseconds())/float64(b.N*n), "ns/file")
}
