package gateway

import (
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// reqLog is a request's logger. zap.Logger.With encodes its fields up front, on every
// request; most requests log nothing at the configured level, so reqLog keeps the fields
// and hands them to zap only when a line is written.
type reqLog struct {
	base   *zap.Logger
	fields []zap.Field
}

func newReqLog(base *zap.Logger, fields ...zap.Field) *reqLog {
	return &reqLog{base: base, fields: fields}
}

// With adds fields for the lines that follow.
func (l *reqLog) With(fields ...zap.Field) *reqLog {
	all := make([]zap.Field, 0, len(l.fields)+len(fields))
	return &reqLog{base: l.base, fields: append(append(all, l.fields...), fields...)}
}

func (l *reqLog) write(level zapcore.Level, msg string, fields []zap.Field) {
	if ce := l.base.Check(level, msg); ce != nil {
		ce.Write(append(append(make([]zap.Field, 0, len(l.fields)+len(fields)), l.fields...), fields...)...)
	}
}

func (l *reqLog) Info(msg string, fields ...zap.Field)  { l.write(zapcore.InfoLevel, msg, fields) }
func (l *reqLog) Warn(msg string, fields ...zap.Field)  { l.write(zapcore.WarnLevel, msg, fields) }
func (l *reqLog) Error(msg string, fields ...zap.Field) { l.write(zapcore.ErrorLevel, msg, fields) }
