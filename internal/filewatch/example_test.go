package filewatch_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"tollgate.dev/tollgate/internal/filewatch"
)

// A policy directory is read as the policy loader reads it: YAML files only,
// recursively, in lexical order, hidden entries skipped.
func ExampleRead() {
	dir, _ := os.MkdirTemp("", "filewatch-example")
	defer os.RemoveAll(dir)
	os.MkdirAll(filepath.Join(dir, "team"), 0o700)
	os.WriteFile(filepath.Join(dir, "b.yaml"), []byte("kind: B\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "team", "a.yml"), []byte("kind: A\n"), 0o600)
	os.WriteFile(filepath.Join(dir, ".b.yaml.swp"), []byte("junk"), 0o600)
	os.WriteFile(filepath.Join(dir, "README"), []byte("docs"), 0o600)

	snap, err := filewatch.Read([]string{dir}, filewatch.ReadOptions{
		Dirs:  true,
		Match: func(name string) bool { return strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml") },
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, f := range snap.Files {
		rel, _ := filepath.Rel(dir, f.Path)
		fmt.Printf("%s: %q\n", rel, f.Data)
	}

	// A missing file is an error, never an empty snapshot.
	_, err = filewatch.Read([]string{filepath.Join(dir, "gone.yaml")}, filewatch.ReadOptions{})
	fmt.Println(strings.ReplaceAll(err.Error(), dir, "$DIR"))
	// Output:
	// b.yaml: "kind: B\n"
	// team/a.yml: "kind: A\n"
	// stat $DIR/gone.yaml: no such file or directory
}

// On SIGHUP, read the files settled and parse the bytes returned, never the
// files again.
func ExampleReadSettled() {
	dir, _ := os.MkdirTemp("", "filewatch-example")
	defer os.RemoveAll(dir)
	cert := filepath.Join(dir, "tls.crt")
	os.WriteFile(cert, []byte("-----BEGIN CERTIFICATE-----\n..."), 0o600)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	snap, err := filewatch.ReadSettled(ctx, []string{cert}, 10*time.Millisecond, filewatch.ReadOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	data, _ := snap.Data(cert)
	fmt.Println(len(data), "bytes, version", len(snap.Version()), "hex digits")
	// Output:
	// 31 bytes, version 12 hex digits
}
