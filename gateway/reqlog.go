package gateway

import (
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// reqLog is a request's logger. zap.Logger.With encodes its fields up front, on every
// request; most requests log nothing at the configured level, so reqLog keeps the values
// and makes zap fields of them only when a line is written (a refused guess, the cheapest
// request an attacker can send, then costs no field slice).
type reqLog struct {
	base                               *zap.Logger
	requestID, partner, site, endpoint string
	fields                             []zap.Field // added by With
}

func newReqLog(base *zap.Logger, requestID, partner, site, endpoint string) *reqLog {
	return &reqLog{base: base, requestID: requestID, partner: partner, site: site, endpoint: endpoint}
}

// With adds fields for the lines that follow.
func (l *reqLog) With(fields ...zap.Field) *reqLog {
	n := *l
	n.fields = append(append(make([]zap.Field, 0, len(l.fields)+len(fields)), l.fields...), fields...)
	return &n
}

// enabled reports whether lines of level are written, for callers whose fields cost.
func (l *reqLog) enabled(level zapcore.Level) bool { return l.base.Core().Enabled(level) }

func (l *reqLog) write(level zapcore.Level, msg string, fields []zap.Field) {
	if ce := l.base.Check(level, msg); ce != nil {
		all := make([]zap.Field, 0, 4+len(l.fields)+len(fields))
		all = append(all, zap.String("request_id", l.requestID), zap.String("partner", l.partner),
			zap.String("site", l.site), zap.String("endpoint", l.endpoint))
		ce.Write(append(append(all, l.fields...), fields...)...)
	}
}

func (l *reqLog) Info(msg string, fields ...zap.Field)  { l.write(zapcore.InfoLevel, msg, fields) }
func (l *reqLog) Warn(msg string, fields ...zap.Field)  { l.write(zapcore.WarnLevel, msg, fields) }
func (l *reqLog) Error(msg string, fields ...zap.Field) { l.write(zapcore.ErrorLevel, msg, fields) }
