package main

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
)

// The null responders answer the benchmark's lookups correctly without any
// backend, with the least work a server can do: read one request, look the
// reply up in a precomputed table, write it. They run in their own process
// (like shitenno) and their throughput is the floor of the socket round
// trip on this machine: the physical limit shitenno's cached path is held
// against.

// serveNull listens on a unix socket and answers proto ("postfix" or
// "dovecot") lookups until the process is killed.
func serveNull(proto, path string) error {
	_ = os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		return err
	}
	var w wire
	var serve func(net.Conn, wire)
	switch proto {
	case "postfix":
		w, serve = postfixWire(), nullPostfix
	case "dovecot":
		w, serve = dovecotWire(), nullDovecot
	default:
		return errors.New("unknown protocol " + strconv.Quote(proto))
	}
	for {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		go serve(c, w)
	}
}

// nullPostfix reads netstrings "virtual <key>" and writes the expected
// reply; anything unexpected closes the connection (the client counts it).
func nullPostfix(c net.Conn, w wire) {
	defer c.Close()
	br := bufio.NewReaderSize(c, 4096)
	buf := make([]byte, 0, 256)
	for {
		p, err := readNetstring(br, buf)
		if err != nil {
			return
		}
		k, ok := bytes.CutPrefix(p, []byte(postfixVerb+" "))
		if !ok {
			return
		}
		i, ok := keyIndex(k)
		if !ok {
			return
		}
		if _, err := c.Write(w.reply[i]); err != nil {
			return
		}
	}
}

// nullDovecot skips the hello and answers "Lshared/passdb/<key>\t<user>".
func nullDovecot(c net.Conn, w wire) {
	defer c.Close()
	br := bufio.NewReaderSize(c, 4096)
	const pre = "Lshared/" + dovecotVerb + "/"
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return
		}
		if line[0] == 'H' {
			continue // no reply to a hello (PROTOCOLS.md §3.2)
		}
		k, ok := bytes.CutPrefix(line, []byte(pre))
		if !ok {
			return
		}
		if t := bytes.IndexByte(k, '\t'); t >= 0 {
			k = k[:t]
		}
		i, ok := keyIndex(k)
		if !ok {
			return
		}
		if _, err := c.Write(w.reply[i]); err != nil {
			return
		}
	}
}

// readNetstring is a minimal netstring reader for the bench's own ends
// (null responder and client), deliberately independent of
// pkg/socketmap's codec so that a codec bug cannot agree with itself.
// Payloads are bounded by 64 KiB: no benchmark frame comes near it.
func readNetstring(br *bufio.Reader, buf []byte) ([]byte, error) {
	n, digits := 0, 0
	for {
		c, err := br.ReadByte()
		if err != nil {
			if err == io.EOF && digits > 0 {
				return nil, io.ErrUnexpectedEOF
			}
			return nil, err
		}
		if c == ':' && digits > 0 {
			break
		}
		if c < '0' || c > '9' || digits > 5 {
			return nil, errors.New("bad netstring length")
		}
		n = n*10 + int(c-'0')
		digits++
	}
	if cap(buf) < n+1 {
		buf = make([]byte, n+1)
	}
	buf = buf[:n+1]
	if _, err := io.ReadFull(br, buf); err != nil {
		return nil, io.ErrUnexpectedEOF
	}
	if buf[n] != ',' {
		return nil, errors.New("netstring not terminated by a comma")
	}
	return buf[:n], nil
}
