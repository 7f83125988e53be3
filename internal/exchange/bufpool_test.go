package exchange

import (
	"net/http/httputil"
	"testing"
)

var _ httputil.BufferPool = &CopyBuffers

func TestCopyBuffers(t *testing.T) {
	b := CopyBuffers.Get()
	if len(b) != copyBufferSize || cap(b) != copyBufferSize {
		t.Fatalf("Get: len %d cap %d, want %d", len(b), cap(b), copyBufferSize)
	}
	CopyBuffers.Put(b)
	CopyBuffers.Put(make([]byte, 10)) // another size: dropped, not handed out again
	for range 4 {
		if b := CopyBuffers.Get(); len(b) != copyBufferSize {
			t.Fatalf("Get after Put of a short buffer: len %d", len(b))
		}
	}
	// Not 0: a GC empties the pool, and the race detector drops a quarter
	// of what is put. A pool that allocated on every Get or Put would be 1.
	if n := testing.AllocsPerRun(100, func() { CopyBuffers.Put(CopyBuffers.Get()) }); n >= 0.5 {
		t.Errorf("Get+Put: %v allocs per call, want ~0", n)
	}
}
