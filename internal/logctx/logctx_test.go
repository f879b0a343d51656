package logctx

import (
	"bytes"
	"context"
	"log/slog"
	"testing"
)

func TestFromReturnsTheCarriedLogger(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(slog.NewTextHandler(&buf, nil))
	From(With(context.Background(), l)).Info("hello")
	if !bytes.Contains(buf.Bytes(), []byte("msg=hello")) {
		t.Fatalf("the carried logger was not used: %q", buf.String())
	}
	if From(context.Background()) != slog.Default() {
		t.Fatal("a context without a logger must give slog.Default")
	}
}
