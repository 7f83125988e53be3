package pathnorm

import (
	"fmt"
	"strconv"
)

// Mode is how much of the path is normalized, named as Istio's
// meshConfig.pathNormalization.normalization values. The zero Mode is
// invalid, so a forgotten setting fails closed instead of meaning NONE.
type Mode uint8

const (
	// ModeNone strips the fragment and validates; nothing else. Unsafe for
	// path-based policy: "/public/../admin" reaches the backend as sent.
	ModeNone Mode = iota + 1
	// ModeBase decodes unreserved escapes, turns '\' into '/' and removes dot
	// segments (RFC 3986 §5.2.4). Istio's default.
	ModeBase
	// ModeMergeSlashes is ModeBase and then merges runs of '/'.
	ModeMergeSlashes
	// ModeDecodeAndMergeSlashes decodes %2F and %5C to '/' first, then
	// ModeMergeSlashes.
	ModeDecodeAndMergeSlashes
)

var modeNames = [...]string{
	ModeNone:                  "NONE",
	ModeBase:                  "BASE",
	ModeMergeSlashes:          "MERGE_SLASHES",
	ModeDecodeAndMergeSlashes: "DECODE_AND_MERGE_SLASHES",
}

// String returns the Istio name of m.
func (m Mode) String() string {
	if m.valid() {
		return modeNames[m]
	}
	return "Mode(" + strconv.Itoa(int(m)) + ")"
}

func (m Mode) valid() bool { return m >= ModeNone && m <= ModeDecodeAndMergeSlashes }

// ParseMode accepts exactly the Istio names NONE, BASE, MERGE_SLASHES and
// DECODE_AND_MERGE_SLASHES (case-sensitive, as Istio's enum is).
//
// Istio's "DEFAULT" is refused on purpose: in Istio it means BASE, while
// Tollgate's default is MERGE_SLASHES, and a policy file that moves between
// the two must not silently change meaning.
func ParseMode(s string) (Mode, error) {
	for m := ModeNone; m <= ModeDecodeAndMergeSlashes; m++ {
		if modeNames[m] == s {
			return m, nil
		}
	}
	if s == "DEFAULT" {
		return 0, fmt.Errorf("path normalization %q is ambiguous (Istio's DEFAULT is BASE, Tollgate's default is MERGE_SLASHES): name the mode", s)
	}
	return 0, fmt.Errorf("unknown path normalization %q (want NONE, BASE, MERGE_SLASHES or DECODE_AND_MERGE_SLASHES)", s)
}

// EscapedSlashes is what happens to %2F, %2f, %5C and %5c in a path, named
// as Envoy's path_with_escaped_slashes_action values. The zero value is
// invalid.
type EscapedSlashes uint8

const (
	// EscapedSlashesReject fails the request (400): the safe choice when the
	// backend's reading of %2F is unknown (CVE-2021-31920).
	EscapedSlashesReject EscapedSlashes = iota + 1
	// EscapedSlashesDecode turns %2F into '/' and %5C into '\' (and so '/'
	// in BASE and above) before normalization.
	EscapedSlashesDecode
	// EscapedSlashesKeep leaves them verbatim: Istio's behaviour outside
	// DECODE_AND_MERGE_SLASHES.
	EscapedSlashesKeep
)

var escapedSlashesNames = [...]string{
	EscapedSlashesReject: "REJECT_REQUEST",
	EscapedSlashesDecode: "UNESCAPE_AND_FORWARD",
	EscapedSlashesKeep:   "KEEP_UNCHANGED",
}

// String returns the Envoy name of e.
func (e EscapedSlashes) String() string {
	if e.valid() {
		return escapedSlashesNames[e]
	}
	return "EscapedSlashes(" + strconv.Itoa(int(e)) + ")"
}

func (e EscapedSlashes) valid() bool {
	return e >= EscapedSlashesReject && e <= EscapedSlashesKeep
}

// ParseEscapedSlashes accepts exactly the Envoy names REJECT_REQUEST,
// UNESCAPE_AND_FORWARD and KEEP_UNCHANGED. (Envoy's UNESCAPE_AND_REDIRECT
// is not offered: a redirect is the ingress's business, not the
// normalizer's.)
func ParseEscapedSlashes(s string) (EscapedSlashes, error) {
	for e := EscapedSlashesReject; e <= EscapedSlashesKeep; e++ {
		if escapedSlashesNames[e] == s {
			return e, nil
		}
	}
	return 0, fmt.Errorf("unknown escaped slashes action %q (want REJECT_REQUEST, UNESCAPE_AND_FORWARD or KEEP_UNCHANGED)", s)
}

// Options select the normalization. Build them with [Default],
// [IstioDefault] or by hand; the zero Options are invalid and make
// [Normalize] fail with [ErrInvalidOptions].
type Options struct {
	Mode Mode
	// EscapedSlashes is ignored under ModeDecodeAndMergeSlashes, which
	// always decodes (that is what the mode means in Istio).
	EscapedSlashes EscapedSlashes
	// PathParameters applies in every mode, NONE included.
	PathParameters PathParameters
}

// Default is Tollgate's default: MERGE_SLASHES with escaped slashes
// rejected and path parameters refused outside the last segment. It is
// stricter than Istio's default (see the package doc, CVE-2021-31920 and
// [PathParametersRejectExceptLast]).
func Default() Options {
	return Options{
		Mode:           ModeMergeSlashes,
		EscapedSlashes: EscapedSlashesReject,
		PathParameters: PathParametersRejectExceptLast,
	}
}

// IstioDefault is Istio's default: BASE with escaped slashes and path
// parameters kept.
func IstioDefault() Options {
	return Options{Mode: ModeBase, EscapedSlashes: EscapedSlashesKeep, PathParameters: PathParametersKeep}
}

// Validate reports whether o can be used.
func (o Options) Validate() error {
	if !o.Mode.valid() {
		return fmt.Errorf("%w: mode %v", ErrInvalidOptions, o.Mode)
	}
	if o.Mode != ModeDecodeAndMergeSlashes && !o.EscapedSlashes.valid() {
		return fmt.Errorf("%w: escaped slashes %v", ErrInvalidOptions, o.EscapedSlashes)
	}
	if !o.PathParameters.valid() {
		return fmt.Errorf("%w: path parameters %v", ErrInvalidOptions, o.PathParameters)
	}
	return nil
}

// slashAction is the escaped-slash action in effect.
func (o Options) slashAction() EscapedSlashes {
	if o.Mode == ModeDecodeAndMergeSlashes {
		return EscapedSlashesDecode
	}
	return o.EscapedSlashes
}
