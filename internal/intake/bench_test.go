package intake

import (
	"bytes"
	"context"
	"testing"
)

// hostileBody is the 4 MiB body of empty notifications that once took the handler to over 1 GiB: about
// 1.4 million elements, none of which needs a secret to send.
func hostileBody() []byte {
	const size = 4 << 20
	var b bytes.Buffer
	b.Grow(size)
	b.WriteString(`{"value":[{}`)
	for b.Len() < size-len(`,{}]}`) {
		b.WriteString(`,{}`)
	}
	b.WriteString(`]}`)
	return b.Bytes()
}

// genuineBody is a 4 MiB POST of genuine notifications (about 5,600), all to be queued.
func genuineBody(size int) ([]byte, int) {
	var b bytes.Buffer
	b.WriteString(`{"value":[`)
	n := 0
	for b.Len() < size-1024 {
		if n > 0 {
			b.WriteByte(',')
		}
		b.WriteString(change(guid(n)))
		n++
	}
	b.WriteString(`]}`)
	return b.Bytes(), n
}

func BenchmarkHostileBody(b *testing.B) {
	body := hostileBody()
	v := newVerifier(b)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		r, err := v.Collection(context.Background(), body)
		if err != nil || r.BadClientState != 1398101 && r.BadClientState < 1_000_000 {
			b.Fatalf("%+v %v", r.BadClientState, err)
		}
	}
}

func BenchmarkGenuine4MiB(b *testing.B) {
	body, n := genuineBody(4 << 20)
	v := newVerifier(b)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		r, err := v.Collection(context.Background(), body)
		if err != nil || r.Changes != n {
			b.Fatalf("queued %d of %d: %v", r.Changes, n, err)
		}
	}
}
