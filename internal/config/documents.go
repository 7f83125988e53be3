package config

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// Document is one YAML document from a policy file: an Istio AuthorizationPolicy or
// RequestAuthentication, or a Tollgate extension of one. Loaders of each kind pick
// the documents whose Kind they own and decode Node with a Decoder for File.
type Document struct {
	File       string
	APIVersion string
	Kind       string
	Node       *yaml.Node
}

// Position returns where the document starts.
func (d Document) Position() Position {
	return Position{File: d.File, Line: d.Node.Line, Col: d.Node.Column}
}

// DocumentSet is every document read from a list of files and directories, with a
// version that names their content.
type DocumentSet struct {
	Documents []Document
	// Files are the files read, in order.
	Files []string
	// Version is a short content hash of every file read (names and bytes), so two
	// loads of the same content have the same version.
	Version string
}

// LoadDocuments reads every document of the given files and directories. A directory
// contributes its *.yaml and *.yml files (recursively, in lexical order; hidden files
// and directories, such as Kubernetes ConfigMap "..data" links, are skipped). Every
// document must have apiVersion and kind. All problems are returned at once.
func LoadDocuments(paths []string) (*DocumentSet, error) {
	var files []string
	var errs Errors
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			errs = append(errs, Error{File: p, Msg: "cannot read: " + unwrapPathError(err).Error()})
			continue
		}
		if !fi.IsDir() {
			files = append(files, p)
			continue
		}
		err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			name := d.Name()
			if path != p && strings.HasPrefix(name, ".") {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			if !d.IsDir() && (strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml")) {
				files = append(files, path)
			}
			return nil
		})
		if err != nil {
			errs = append(errs, Error{File: p, Msg: "cannot read directory: " + err.Error()})
		}
	}
	set := &DocumentSet{Files: files}
	h := sha256.New()
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			errs = append(errs, Error{File: f, Msg: "cannot read: " + unwrapPathError(err).Error()})
			continue
		}
		h.Write([]byte(f))
		h.Write([]byte{0})
		h.Write(src)
		h.Write([]byte{0})
		nodes, err := ParseDocuments(f, src)
		var es Errors
		if errors.As(err, &es) {
			errs = append(errs, es...)
		}
		for _, n := range nodes {
			doc, err := DocumentOf(f, n)
			if err != nil {
				errs = append(errs, err.(Error))
				continue
			}
			set.Documents = append(set.Documents, doc)
		}
	}
	set.Version = hex.EncodeToString(h.Sum(nil))[:12]
	if err := errs.Err(); err != nil {
		return set, err
	}
	return set, nil
}

func scalarField(n *yaml.Node, name string) string {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == name && n.Content[i+1].Kind == yaml.ScalarNode {
			return n.Content[i+1].Value
		}
	}
	return ""
}

// Kinds returns the distinct apiVersion/kind pairs of the set, sorted.
func (s *DocumentSet) Kinds() []string {
	var out []string
	for _, d := range s.Documents {
		k := d.APIVersion + "/" + d.Kind
		if !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// DocumentOf makes a Document of one parsed YAML document of file. The error, a
// positioned Error, says why n is not one: not a mapping, or no apiVersion or kind.
func DocumentOf(file string, n *yaml.Node) (Document, error) {
	if n.Kind != yaml.MappingNode {
		return Document{}, Error{File: file, Line: n.Line, Col: n.Column, Msg: "document must be a mapping with apiVersion and kind"}
	}
	doc := Document{File: file, Node: n, APIVersion: scalarField(n, "apiVersion"), Kind: scalarField(n, "kind")}
	if doc.APIVersion == "" || doc.Kind == "" {
		return Document{}, Error{File: file, Line: n.Line, Col: n.Column, Msg: "document needs apiVersion and kind"}
	}
	return doc, nil
}

// ObjectMeta is the Kubernetes metadata that Istio's documents carry, as
// `kubectl get -o yaml` writes it: the fields that name and select a document,
// and the ones the API server adds, accepted and ignored so exported
// documents load unchanged. Every loader of a Kubernetes-shaped document
// (AuthorizationPolicy, RequestAuthentication, ServiceEntry, DestinationRule)
// decodes its metadata into it.
type ObjectMeta struct {
	Name                       string            `yaml:"name"`
	Namespace                  string            `yaml:"namespace"`
	Labels                     map[string]string `yaml:"labels"`
	Annotations                map[string]string `yaml:"annotations"`
	UID                        any               `yaml:"uid"`
	ResourceVersion            any               `yaml:"resourceVersion"`
	Generation                 any               `yaml:"generation"`
	CreationTimestamp          any               `yaml:"creationTimestamp"`
	DeletionTimestamp          any               `yaml:"deletionTimestamp"`
	DeletionGracePeriodSeconds any               `yaml:"deletionGracePeriodSeconds"`
	GenerateName               any               `yaml:"generateName"`
	ManagedFields              any               `yaml:"managedFields"`
	OwnerReferences            any               `yaml:"ownerReferences"`
	Finalizers                 any               `yaml:"finalizers"`
}
