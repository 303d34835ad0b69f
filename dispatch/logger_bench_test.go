package dispatch

import (
	"io"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// BenchmarkRunLogger measures what a run's logger costs when, as at the usual levels, it
// writes no line: the dispatcher makes one per accept and per execution, and the engine
// one per run. BENCHMARKS.md weighs it against a run's CPU.
func BenchmarkRunLogger(b *testing.B) {
	core := zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(io.Discard), zap.ErrorLevel)
	base := zap.New(core)
	b.ReportAllocs()
	for b.Loop() {
		log := base.WithLazy(zap.String("run_id", "01JDX4Y8R3V6ZC0QW5M2N7K9PA"), zap.String("partner", "acme"), zap.String("saga", "loan-milestone"))
		log.Debug("run claimed")
	}
}
