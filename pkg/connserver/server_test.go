package connserver

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

func TestOr(t *testing.T) {
	if got := Or(0, 7); got != 7 {
		t.Errorf("Or(0, 7) = %d", got)
	}
	if got := Or(-1*time.Second, time.Minute); got != time.Minute {
		t.Errorf("Or(-1s, 1m) = %v", got)
	}
	if got := Or(3, 7); got != 3 {
		t.Errorf("Or(3, 7) = %d", got)
	}
}

// Stop wakes a Sequential connection waiting for a request at once, but
// lets one in progress write its reply before reply reports the end.
func TestSequentialStop(t *testing.T) {
	t.Run("idle", func(t *testing.T) {
		cli, srv := net.Pipe()
		defer cli.Close()
		c := &Sequential{NC: srv}
		got := make(chan bool, 1)
		go func() { got <- c.next(bufio.NewReader(srv), time.Hour, time.Second, nil) }()
		time.Sleep(10 * time.Millisecond) // let next block in Peek; a late Stop is seen by armIdle instead
		c.Stop()
		select {
		case ok := <-got:
			if ok {
				t.Fatal("next reported a request after Stop")
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Stop did not wake an idle connection")
		}
		if c.next(bufio.NewReader(srv), time.Hour, time.Second, nil) {
			t.Fatal("next after Stop reported a request")
		}
	})
	t.Run("busy", func(t *testing.T) {
		cli, srv := net.Pipe()
		defer cli.Close()
		c := &Sequential{NC: srv}
		go func() { _, _ = cli.Write([]byte("q")) }()
		br := bufio.NewReader(srv)
		if !c.next(br, time.Hour, time.Second, nil) {
			t.Fatal("next missed the request")
		}
		c.Stop()
		if _, err := br.ReadByte(); err != nil {
			t.Fatalf("Stop cut the request being read: %v", err)
		}
		read := make(chan []byte, 1)
		go func() { b, _ := io.ReadAll(cli); read <- b }()
		if c.reply([]byte("answer"), time.Second) {
			t.Fatal("reply after Stop did not report the end")
		}
		_ = c.Close()
		if b := <-read; string(b) != "answer" {
			t.Fatalf("reply written %q", b)
		}
	})
}

// The Server sets its Core up on first use, whichever method comes first.
func TestServerCloseBeforeServe(t *testing.T) {
	var s Server
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := s.ServeConns(l, nil); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve after Close = %v, want ErrServerClosed", err)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown after Close: %v", err)
	}
}

// Timeouts takes the settings, with the protocol's idle default and 10 s
// for what is unset.
func TestServerTimeouts(t *testing.T) {
	s := Server{ReadTimeout: time.Second}
	want := Timeouts{Idle: time.Hour, Read: time.Second, Write: 10 * time.Second}
	if got := s.Timeouts(time.Hour); got != want {
		t.Fatalf("Timeouts(1h) = %+v, want %+v", got, want)
	}
	s.IdleTimeout = time.Minute
	if got := s.Timeouts(time.Hour).Idle; got != time.Minute {
		t.Fatalf("Idle = %v, want the setting", got)
	}
}
