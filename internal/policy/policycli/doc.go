// Package policycli is the logic of `gateway policy eval` and `gateway policy
// test`: it turns a JSON (or YAML) request description into a request.Request,
// normalizing its path exactly as the gateway does, asks the policy engine, and
// prints the decision record. cmd/gateway only parses flags and calls Eval or
// Test.
package policycli
