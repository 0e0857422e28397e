package config

import (
	"io"
	"log/slog"
	"strings"
)

// NewLogger builds the process logger from the log section. Only main calls
// it; components receive the logger.
func NewLogger(l Log, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(strings.ToLower(l.Level))) // validated already
	opts := &slog.HandlerOptions{Level: level}
	if l.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
