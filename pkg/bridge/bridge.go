// Package bridge maps each protocol's requests onto the backend contract
// and the backend's answers back onto each protocol's replies. It is the
// only package that knows both sides; the mapping tables of the contract
// are written down here as code.
package bridge

import (
	"context"
	"encoding/json"

	"github.com/shitenno/shitenno/pkg/remote"
)

// Backend is the part of *remote.Client the bridges use.
type Backend interface {
	Lookup(ctx context.Context, verb string, object any) (remote.Result, error)
	LookupRaw(ctx context.Context, verb string, object json.RawMessage) (remote.Result, error)
	// LookupObject is LookupRaw for an object of strings, which a cache
	// hit needs no JSON for.
	LookupObject(ctx context.Context, verb string, object remote.Object) (remote.Result, error)
}

// Outcome labels a lookup for logs and metrics.
type Outcome string

// The three outcomes of every lookup.
const (
	OutcomeFound    Outcome = "found"
	OutcomeNotFound Outcome = "not_found"
	OutcomeFailed   Outcome = "failed"
)

// Recorder is told about every lookup (metrics, debug logs). It must not
// log the data.
type Recorder func(verb string, outcome Outcome, err error)

// reason returns the short, peer-safe text of a failure, found through
// any wrapping.
func reason(err error) string { return remote.Reason(err) }
