package live

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/pion/logging"
)

// pionLogs sends pion's logs to the agent's slog logger, so the agent
// keeps one log. Everything below error goes to debug: pion warns about
// routine events (pings before the remote candidates are known, streams
// closed during teardown) on every session, and why a session ended is
// logged by the session itself.
type pionLogs struct{ log *slog.Logger }

func (f pionLogs) NewLogger(scope string) logging.LeveledLogger {
	return pionLogger{f.log.With("pion", scope)}
}

type pionLogger struct{ log *slog.Logger }

func (l pionLogger) Trace(string)          {}
func (l pionLogger) Tracef(string, ...any) {}

func (l pionLogger) Debug(msg string)               { l.emit(slog.LevelDebug, msg) }
func (l pionLogger) Debugf(format string, a ...any) { l.emitf(slog.LevelDebug, format, a) }
func (l pionLogger) Info(msg string)                { l.emit(slog.LevelDebug, msg) }
func (l pionLogger) Infof(format string, a ...any)  { l.emitf(slog.LevelDebug, format, a) }
func (l pionLogger) Warn(msg string)                { l.emit(slog.LevelDebug, msg) }
func (l pionLogger) Warnf(format string, a ...any)  { l.emitf(slog.LevelDebug, format, a) }
func (l pionLogger) Error(msg string)               { l.emit(slog.LevelError, msg) }
func (l pionLogger) Errorf(format string, a ...any) { l.emitf(slog.LevelError, format, a) }

func (l pionLogger) emit(level slog.Level, msg string) {
	l.log.Log(context.Background(), level, msg)
}

// emitf formats only when the line will be written: pion formats debug
// lines on hot paths.
func (l pionLogger) emitf(level slog.Level, format string, a []any) {
	if l.log.Enabled(context.Background(), level) {
		l.log.Log(context.Background(), level, fmt.Sprintf(format, a...))
	}
}
