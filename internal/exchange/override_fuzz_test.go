package exchange

import (
	"errors"
	"io"
	"mime/multipart"
	"strings"
	"testing"
	"testing/iotest"
)

// FuzzMultipartGuard checks the streaming guard against Go's own multipart
// parser: wherever mime/multipart finds a part whose form name is a method
// override (before any parse error), reading the body through the guard
// fails, however the body is split across reads; and a body the guard lets
// through arrives byte for byte.
func FuzzMultipartGuard(f *testing.F) {
	for _, s := range []string{
		"--B\r\nContent-Disposition: form-data; name=\"_method\"\r\n\r\nDELETE\r\n--B--\r\n",
		"--B\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--B--\r\n",
		"--B\r\nContent-Disposition: form-data;\r\n name=\"_method\"\r\n\r\nX\r\n--B--\r\n",
		"preamble\r\n--B\r\ncontent-disposition: form-data; name=_METHOD\r\n\r\nX\r\n--B--",
	} {
		f.Add(s, uint8(0))
	}
	f.Fuzz(func(t *testing.T, body string, split uint8) {
		var src io.Reader = strings.NewReader(body)
		if split%2 == 1 {
			src = iotest.OneByteReader(src)
		}
		g := newMultipartGuard(io.NopCloser(src), "B")
		got, err := io.ReadAll(g)
		if err != nil && !errors.Is(err, ErrMethodOverrideInBody) {
			t.Fatalf("unexpected error %v", err)
		}
		if err == nil && string(got) != body {
			t.Fatalf("body changed: %q -> %q", body, got)
		}
		mr := multipart.NewReader(strings.NewReader(body), "B")
		for {
			p, perr := mr.NextPart()
			if perr != nil {
				break
			}
			if isOverrideParam(p.FormName()) && err == nil {
				t.Fatalf("mime/multipart reads override field %q, the guard let it through:\n%q", p.FormName(), body)
			}
		}
	})
}
