package remote

// The helpers the external test package (remote_test) uses: it imports
// pkg/daemon for the configuration→TLSOptions mapping the daemons really
// use, which package remote's own tests cannot (daemon imports remote).
var (
	// NewTLSBackend is newTLSBackend.
	NewTLSBackend = newTLSBackend
	// NewTLSClient is newTLSClient.
	NewTLSClient = newTLSClient
	// HostPort is hostPort.
	HostPort = hostPort
	// LookupOK is lookupOK.
	LookupOK = lookupOK
	// WriteTestFile is writeTestFile.
	WriteTestFile = writeTestFile
)

// Last is last.
func (b *tlsBackend) Last() (cn string, resumed bool) { return b.last() }
