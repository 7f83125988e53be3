package egress

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"

	"tollgate.dev/tollgate/internal/filewatch"
)

// secretRead is how credential files are read: one named regular file, small
// (an API key or a client secret is bytes, not megabytes).
var secretRead = filewatch.ReadOptions{MaxFileSize: 64 << 10}

// headerFile is one header set from a file, reloaded when the file changes.
type headerFile struct {
	name   string // canonical
	file   string
	prefix string

	// value is the whole header value, prefix included; swapped whole when
	// the file changes, read without locks by Apply.
	value   atomic.Pointer[secret]
	watcher *filewatch.Watcher
}

func newHeaderFile(name string, h HeaderFromFile, opts CredentialOptions) (*headerFile, error) {
	if h.File == "" {
		return nil, fmt.Errorf("header %s: file is required", name)
	}
	if h.Prefix != "" {
		if err := checkValue(h.Prefix); err != nil {
			return nil, fmt.Errorf("header %s: prefix: %w", name, err)
		}
	}
	f := &headerFile{name: name, file: h.File, prefix: h.Prefix}
	// Startup reads once, without settling: a file caught mid-write is
	// nearly always empty, and then the gateway refuses to start.
	snap, err := filewatch.Read([]string{h.File}, secretRead)
	if err != nil {
		return nil, fmt.Errorf("header %s: %w", name, err)
	}
	v, err := f.parse(snap)
	if err != nil {
		return nil, err
	}
	f.value.Store(v)
	// On an error the last good value stays: a key file emptied or removed
	// mid-rotation must not send requests out without their credential (or
	// with an empty one).
	w, err := watchCredentialFile(h.File, "header "+name, snap, opts, func(snap *filewatch.Snapshot) error {
		v, err := f.parse(snap)
		if err == nil {
			f.value.Store(v)
		}
		return err
	})
	if err != nil {
		// Unreachable: the path, interval and settle were checked.
		return nil, fmt.Errorf("header %s: %w", name, err)
	}
	f.watcher = w
	return f, nil
}

// watchCredentialFile watches one credential file. take gets each settled
// new content and puts it in force or says why not; on its error, or a read
// error, the last good value stays. OnReload hears every outcome; errors
// name the file, never its content.
func watchCredentialFile(file, what string, initial *filewatch.Snapshot, opts CredentialOptions, take func(*filewatch.Snapshot) error) (*filewatch.Watcher, error) {
	return filewatch.New([]string{file}, filewatch.Options{
		ReadOptions: secretRead,
		Interval:    opts.PollInterval,
		Settle:      opts.Settle,
		Initial:     initial,
		OnChange: func(snap *filewatch.Snapshot, err error) {
			if err == nil {
				err = take(snap)
			} else {
				err = fmt.Errorf("%s: %w", what, err)
			}
			if err != nil {
				err = fmt.Errorf("egress: credentials: %w", err)
			}
			if opts.OnReload != nil {
				opts.OnReload(file, err)
			}
		},
	})
}

// parse takes the header value from the snapshot's bytes, never re-reading
// the file. Errors name the file, never the content.
func (f *headerFile) parse(snap *filewatch.Snapshot) (*secret, error) {
	data, _ := snap.Data(f.file)
	v, err := fileValue(data)
	if err != nil {
		return nil, fmt.Errorf("header %s: file %s: %w", f.name, f.file, err)
	}
	return &secret{f.prefix + v}, nil
}

// fileValue is a file's content as a one-line value: one trailing newline
// (as editors and echo write it) is dropped; anything else that is not
// printable is refused.
func fileValue(data []byte) (string, error) {
	v := string(data)
	if s, ok := strings.CutSuffix(v, "\n"); ok {
		v = strings.TrimSuffix(s, "\r")
	}
	if v == "" {
		return "", errors.New("empty")
	}
	return v, checkValue(v)
}

// String and GoString name the header, never its value.
func (f *headerFile) String() string   { return f.name + ": " + redacted }
func (f *headerFile) GoString() string { return f.String() }

func (f *headerFile) close() {
	if f.watcher != nil {
		f.watcher.Close()
	}
}
