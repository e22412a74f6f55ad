// Package mailauth speaks the server side of nginx's mail auth_http
// protocol (ngx_mail_auth_http_module, nginx 1.22 and later).
//
// nginx's mail proxy asks an HTTP "auth server" whether a client may log
// in and where to proxy it: one body-less GET per login attempt whose
// Auth-* request headers describe the attempt, answered by Auth-* response
// headers. This package turns those request headers into a Request, calls
// a Handler, and writes its Reply back as headers nginx accepts.
//
// The wire facts it relies on, from ngx_mail_auth_http_module.c at
// release-1.22.1 and https://nginx.org/en/docs/mail/ngx_mail_auth_http_module.html:
//
//   - nginx escapes only Auth-User, Auth-Pass and Auth-SSL-Cert, and only
//     bytes 0x00-0x1F, space and '%' (ngx_escape_uri with
//     NGX_ESCAPE_MAIL_AUTH); a '+' is sent as is. Every other header is raw.
//   - nginx ignores the response status line and body; only headers count,
//     matched case-insensitively. Auth-Status "OK" and "WAIT" are
//     case-sensitive keywords, any other text is an error message.
//   - nginx reads the status line and all headers into one 1024-byte
//     buffer; a longer response is never answered.
//   - nginx trims leading and trailing spaces of a header value and has no
//     escaping for replies, so a value with CR, LF or NUL cannot be sent.
//
// The package knows nothing of JSON or of shitenno's backend: that mapping
// lives in pkg/bridge.
package mailauth
