package filewatch_test

import (
	"context"
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"tollgate.dev/tollgate/internal/filewatch"
)

func TestReadSettled(t *testing.T) {
	tests := []struct {
		name     string
		steps    []step // offsets from the call
		timeout  time.Duration
		settle   time.Duration
		want     string        // content of a returned
		wantIs   error         // or the error
		wantTook time.Duration // fake time the call took
	}{
		{
			name:     "still file: one settle interval",
			want:     "one",
			wantTook: settle,
		},
		{
			name:     "zero or negative settle means the default",
			settle:   -1,
			want:     "one",
			wantTook: filewatch.DefaultSettle,
		},
		{
			name: "caught mid-write (SIGHUP during a rewrite): waits for the whole file",
			// The first read (at 0) sees the file as the step at 0 left it.
			steps: []step{
				{at: 0, do: write("a", "")},
				{at: 100 * time.Millisecond, do: write("a", "new po")},
				{at: 300 * time.Millisecond, do: write("a", "new policy")},
			},
			want:     "new policy",
			wantTook: 3 * settle, // reads at 0, 200 (half), 400, 600
		},
		{
			name:     "missing file: the settled error",
			steps:    []step{{at: 0, do: remove("a")}},
			wantIs:   fs.ErrNotExist,
			wantTook: settle,
		},
		{
			name:     "deleted and recreated within settle: the content",
			steps:    []step{{at: 0, do: remove("a")}, {at: 100 * time.Millisecond, do: write("a", "two")}},
			want:     "two",
			wantTook: 2 * settle,
		},
		{
			name: "files that never hold still: the context ends it",
			steps: []step{
				{at: 100 * time.Millisecond, do: write("a", "1")},
				{at: 300 * time.Millisecond, do: write("a", "2")},
				{at: 500 * time.Millisecond, do: write("a", "3")},
				{at: 700 * time.Millisecond, do: write("a", "4")},
			},
			timeout:  time.Second - time.Millisecond,
			wantIs:   context.DeadlineExceeded,
			wantTook: time.Second - time.Millisecond,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				dir := tree(t, map[string]string{"a": "one"})
				paths := []string{filepath.Join(dir, "a")}
				ctx := t.Context()
				if tt.timeout > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, tt.timeout)
					defer cancel()
				}
				s := tt.settle
				if s == 0 {
					s = settle
				}
				start := time.Now()
				// Steps at offset 0 run before the first read.
				var later []step
				for _, st := range tt.steps {
					if st.at == 0 {
						st.do(t, dir)
					} else {
						later = append(later, st)
					}
				}
				go func() {
					for _, st := range later {
						time.Sleep(time.Until(start.Add(st.at)))
						st.do(t, dir)
					}
				}()
				snap, err := filewatch.ReadSettled(ctx, paths, s, filewatch.ReadOptions{})
				if took := time.Since(start); took != tt.wantTook {
					t.Errorf("took %v; want %v", took, tt.wantTook)
				}
				if tt.wantIs != nil {
					if !errors.Is(err, tt.wantIs) || snap != nil {
						t.Fatalf("ReadSettled = %v, %v; want no snapshot and %v", snap, err, tt.wantIs)
					}
					if errors.Is(err, context.DeadlineExceeded) && !strings.Contains(err.Error(), "did not hold still") {
						t.Errorf("error %q does not say why", err)
					}
					synctest.Wait()
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if got, _ := snap.Data(paths[0]); string(got) != tt.want {
					t.Errorf("content %q; want %q", got, tt.want)
				}
				synctest.Wait()
			})
		})
	}
}
