package decision

import (
	"context"
	"testing"
	"time"

	"github.com/childrens-trust/trustgate/internal/decision/decisiontest"
	"github.com/childrens-trust/trustgate/internal/policy"
	"github.com/childrens-trust/trustgate/internal/revision"
)

// BenchmarkEvaluation compares, in process, a plain evaluation of generated
// inputs (the Trust's usual traffic and requests drawn from the whole
// registry) with one handed a remembered Trust-level part, and the cost
// of computing that part (docs/performance.md).
func BenchmarkEvaluation(b *testing.B) {
	tr := decisiontest.NewTrust(b)
	rev, err := revision.Build(context.Background(), tr.Src, periodFrom, "test")
	if err != nil {
		b.Fatal(err)
	}
	g := decisiontest.NewGenerator(rev.Registry, 5, 300, periodFrom, periodTo)
	ins := make([]policy.Input, 500)
	for i := range ins {
		ins[i] = g.NextWide()
		ins[i].TimeNS = periodFrom.Add(time.Hour).UnixNano()
	}
	ctx := context.Background()
	b.Run("plain", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			rev.Policy.Decide(ctx, &ins[i%len(ins)])
		}
	})
	m := NewMemo(rev.Policy, rev.PolicySources(), 0)
	for i := range ins {
		m.Decide(ctx, &ins[i])
	}
	b.Run("with-remembered-trust-part", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			m.Decide(ctx, &ins[i%len(ins)])
		}
	})
	b.Run("trust-part-alone", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			rev.Policy.TrustPart(ctx, &ins[i%len(ins)])
		}
	})
}
