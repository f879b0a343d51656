package customhandler

import (
	"context"
	"io"
	"log/slog"

	"github.com/graphwebhooks/graph-webhooks-go/internal/logctx"
)

// NewLogger returns a logger that writes one text line per record: Info and Debug to stdout, which the host
// logs at Information, and Warn and Error to stderr, which the host logs at Warning when the line contains
// "warn" and at Error otherwise (docs/host-protocol.md §2.4). slog's "level=WARN" carries that word. The host stamps each line, so
// the logger writes no time.
func NewLogger(stdout, stderr io.Writer, level slog.Leveler) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: dropTime}
	return slog.New(&splitHandler{
		low:  slog.NewTextHandler(stdout, opts),
		high: slog.NewTextHandler(stderr, opts),
	})
}

func dropTime(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}

type splitHandler struct{ low, high slog.Handler }

func (h *splitHandler) Enabled(ctx context.Context, l slog.Level) bool { return h.low.Enabled(ctx, l) }

func (h *splitHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		return h.high.Handle(ctx, r)
	}
	return h.low.Handle(ctx, r)
}

func (h *splitHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &splitHandler{low: h.low.WithAttrs(as), high: h.high.WithAttrs(as)}
}

func (h *splitHandler) WithGroup(name string) slog.Handler {
	return &splitHandler{low: h.low.WithGroup(name), high: h.high.WithGroup(name)}
}

// WithLogger returns ctx carrying l (see internal/logctx).
func WithLogger(ctx context.Context, l *slog.Logger) context.Context { return logctx.With(ctx, l) }

// Logger returns the invocation's logger (function and invocation id attached), or slog.Default.
func Logger(ctx context.Context) *slog.Logger { return logctx.From(ctx) }
