package restart

import (
	"testing"
	"time"
)

func BenchmarkPlanDefault(b *testing.B) {
	p := Default()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Plan(p, t0, t0.Add(time.Hour)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPolicyUnmarshalJSON(b *testing.B) {
	doc := []byte(`{"action":"prompt","message":"Please restart","repeat_prompt":{"enabled":true,"minutes":10},"restart_after":{"enabled":true,"minutes":60},"force_close_locked":false}`)
	b.ReportAllocs()
	for b.Loop() {
		var p Policy
		if err := p.UnmarshalJSON(doc); err != nil {
			b.Fatal(err)
		}
	}
}
