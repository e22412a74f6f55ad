package mailauth

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/shitenno/shitenno/pkg/connserver"
)

// MaxTimeout is the largest backend Timeout the configuration accepts
// (dovecot's dict client gives up at 30 s).
const MaxTimeout = 30 * time.Second

// MaxHeaderBytes bounds an auth request's header block. nginx sends well
// under 1 KiB, or about 3 KiB with auth_http_pass_client_cert; 16 KiB
// leaves room for large client certificates.
const MaxHeaderBytes = 16 << 10

// Handler decides one login attempt. A non-nil error means "cannot decide
// now" (backend down, timeout, bad backend data): the client then gets
// TempFail and may retry. Errors must be safe to log (no passwords).
type Handler interface {
	ServeAuth(ctx context.Context, req *Request) (Reply, error)
}

// WriteMargin is added to the Handler's timeout for a response's write
// deadline: nginx reads the answer at once, so this only bounds a peer
// that stopped reading.
const WriteMargin = 9 * time.Second

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, req *Request) (Reply, error)

// ServeAuth calls f.
func (f HandlerFunc) ServeAuth(ctx context.Context, req *Request) (Reply, error) { return f(ctx, req) }

// HTTPHandler is the http.Handler nginx's auth_http talks to. Any path is
// accepted; the method must be GET, as nginx sends.
type HTTPHandler struct {
	// Handler decides each attempt.
	Handler Handler
	// Timeout, when positive, bounds Handler's context. The backend client
	// has its own; this is a backstop for Handlers without one. The
	// response's write deadline is Timeout + WriteMargin.
	Timeout time.Duration
	// TimeoutFunc, when set, is called per request instead of reading
	// Timeout, so that a reload of the configuration applies to the next
	// request.
	TimeoutFunc func() time.Duration
	// Logger gets malformed requests, invalid replies and panics at Warn
	// and above; nil discards. The per-request line is the Handler's.
	Logger *slog.Logger
}

// ServeHTTP answers one auth_http request. Whatever happens, the response
// carries an Auth-Status: without one nginx tells the client only
// "internal server error".
func (h *HTTPHandler) ServeHTTP(w http.ResponseWriter, hr *http.Request) {
	log := h.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if hr.ContentLength != 0 || len(hr.TransferEncoding) > 0 {
		// nginx sends no body. One here is a request hidden inside
		// another (request smuggling) or garbage; either way the stream
		// cannot be trusted past this head: answer and close unread.
		w.Header().Set("Connection", "close")
		_ = TempFail(nil).write(w, nil, http.StatusBadRequest)
		log.Warn("nginx auth: request with a body refused", "content_length", hr.ContentLength,
			"transfer_encoding", len(hr.TransferEncoding) > 0)
		return
	}
	if hr.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		_ = TempFail(nil).write(w, nil, http.StatusMethodNotAllowed)
		log.Warn("nginx auth: method not allowed", "method", hr.Method)
		return
	}
	if n := headerSize(hr); n > MaxHeaderBytes {
		w.Header().Set("Connection", "close")
		_ = TempFail(nil).write(w, nil, http.StatusRequestHeaderFieldsTooLarge)
		log.Warn("nginx auth: request headers too large", "bytes", n)
		return
	}
	req, err := ParseRequest(hr.Header)
	if err != nil {
		_ = TempFail(nil).write(w, nil, http.StatusBadRequest)
		log.Warn("nginx auth: malformed request", "err", err)
		return
	}
	ctx := hr.Context()
	if timeout := h.timeout(); timeout > 0 {
		// Per request, from the timeout in force now: the server-wide
		// WriteTimeout is only a backstop (see NewServer).
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(timeout + WriteMargin))
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	// Each request is logged once, by the Handler's lookup recorder (the
	// line every listener writes); this only logs what goes wrong here.
	rep, err := h.serve(ctx, req, log)
	if err != nil {
		rep = TempFail(req)
	}
	if werr := rep.write(w, req, http.StatusOK); werr != nil {
		// The Handler built something nginx cannot take: fail safe.
		log.Warn("nginx auth: invalid reply", "req", req, "err", werr)
		_ = TempFail(req).write(w, req, http.StatusOK)
	}
}

// timeout is the Handler's timeout in force.
func (h *HTTPHandler) timeout() time.Duration {
	if h.TimeoutFunc != nil {
		return h.TimeoutFunc()
	}
	return h.Timeout
}

// serve calls the Handler, turning a panic into an error so that nginx
// still gets an answer.
func (h *HTTPHandler) serve(ctx context.Context, req *Request, log *slog.Logger) (rep Reply, err error) {
	defer func() {
		if p := recover(); p != nil {
			log.Error("nginx auth: handler panic", "panic", p, "stack", string(debug.Stack()))
			rep, err = Reply{}, fmt.Errorf("mailauth: handler panic")
		}
	}()
	return h.Handler.ServeAuth(ctx, req)
}

// headerSize approximates the request's header block as it was on the wire.
func headerSize(hr *http.Request) int {
	n := len(hr.Method) + len(hr.RequestURI) + len(hr.Proto) + 4
	for k, vs := range hr.Header {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	return n
}

// Server runs an auth_http endpoint in an *http.Server, shaped like the
// other shitenno servers: Serve, Shutdown, Close. The http.Server stays
// unexported so that its limits, set by NewServer, cannot be undone.
type Server struct {
	// ConnState, when set before Serve, is told when a connection opens
	// (+1) or closes (-1).
	ConnState func(delta int)

	hs *http.Server
}

// NewServer returns a Server for h with every limit set: header read
// deadline, an idle keep-alive limit (the upstream/proxy_pass form keeps
// connections) and MaxHeaderBytes. errLog receives net/http's own errors.
//
// The write deadline of each response is set by HTTPHandler from its
// timeout at that moment, so a reload that changes Timeout applies to the
// next request. The server-wide WriteTimeout is only a backstop for other
// handlers: timeout (the backend Timeout at start) or MaxTimeout,
// whichever is larger, plus 10 s.
func NewServer(h http.Handler, timeout time.Duration, errLog *slog.Logger) *Server {
	if errLog == nil {
		errLog = slog.New(slog.DiscardHandler)
	}
	s := &Server{}
	s.hs = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      max(timeout, MaxTimeout) + 10*time.Second,
		IdleTimeout:       60 * time.Second,
		// net/http allows 4096 bytes beyond MaxHeaderBytes (request line
		// included) before answering 431.
		MaxHeaderBytes: MaxHeaderBytes - 4096,
		ErrorLog:       slog.NewLogLogger(errLog.Handler(), slog.LevelWarn),
		ConnState:      s.connState,
	}
	return s
}

// connState turns net/http's connection states into open/close counts.
func (s *Server) connState(_ net.Conn, st http.ConnState) {
	if s.ConnState == nil {
		return
	}
	switch st {
	case http.StateNew:
		s.ConnState(1)
	case http.StateClosed, http.StateHijacked:
		s.ConnState(-1)
	}
}

// Shutdown stops accepting, closes idle connections and waits for
// in-flight requests to be answered. Unlike http.Server.Shutdown it closes
// the remaining connections when ctx ends first, so the process can exit.
func (s *Server) Shutdown(ctx context.Context) error { return connserver.ShutdownHTTP(ctx, s.hs) }

// Close closes the listeners and every connection at once.
func (s *Server) Close() error { return s.hs.Close() }
