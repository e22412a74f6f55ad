package connserver

import (
	"context"
	"net/http"
)

// ShutdownHTTP is hs.Shutdown, except that when ctx ends before the
// requests in flight are answered it closes the remaining connections, so
// that the process can exit: the Shutdown every shitenno server has.
func ShutdownHTTP(ctx context.Context, hs *http.Server) error {
	err := hs.Shutdown(ctx)
	if err != nil {
		_ = hs.Close()
	}
	return err
}
