//go:build !unix

package logging

import "os"

// journalStreamMatches is false where journald cannot exist.
func journalStreamMatches(string, *os.File) bool { return false }
