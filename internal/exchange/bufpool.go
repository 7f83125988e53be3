package exchange

import "sync"

// copyBufferSize is the size of httputil.ReverseProxy's own copy buffer.
const copyBufferSize = 32 << 10

// CopyBuffers is the httputil.BufferPool of every front's reverse proxy.
// Without one, ReverseProxy allocates (and zeroes) a fresh 32 KiB buffer
// for every response body it copies: the largest single allocation of a
// proxied request, and most of the garbage a small response makes.
var CopyBuffers bufferPool

type bufferPool struct{ p sync.Pool }

// Get returns a 32 KiB buffer.
func (bp *bufferPool) Get() []byte {
	if b, ok := bp.p.Get().(*[copyBufferSize]byte); ok {
		return b[:]
	}
	return new([copyBufferSize]byte)[:]
}

// Put returns a buffer Get gave out; a buffer of another size is dropped.
// The array pointer is stored as is, so Put allocates nothing.
func (bp *bufferPool) Put(b []byte) {
	if cap(b) != copyBufferSize {
		return
	}
	bp.p.Put((*[copyBufferSize]byte)(b[:copyBufferSize]))
}
