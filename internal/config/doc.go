// Package config owns the gateway's YAML schema: strict decoding with positioned
// errors ("file:line:col: path.to.field: problem"), defaults, validation, and the
// immutable snapshot that a reload swaps in.
//
// The Decoder in this package is also what the policy and authentication loaders
// use for Istio documents, so every configuration error Tollgate reports has the
// same shape.
package config
