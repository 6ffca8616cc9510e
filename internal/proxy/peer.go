package proxy

// peerState is what a non-blocking peek at a connection found.
type peerState int

const (
	peerQuiet  peerState = iota // nothing to read, still open
	peerData                    // bytes are waiting
	peerClosed                  // the other end sent FIN: closed, or half-closed
	peerReset                   // reset or another error
)
