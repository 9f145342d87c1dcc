package ops

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

func TestSSHProxy(t *testing.T) {
	agent := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.Listen("unix", agent)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c) // echo until the client closes
			}()
		}
	}()
	p, err := startSSHProxy(agent, os.Getuid(), os.Getgid(), 0o660)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p.path)
	if err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o660 ||
		fi.Sys().(*syscall.Stat_t).Uid != uint32(os.Getuid()) {
		t.Fatalf("proxy socket: %v, %v; want a socket, mode 0660, ours", fi, err)
	}
	c, err := net.Dial("unix", p.path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hello" {
		t.Fatalf("through the proxy: %q, %v", buf, err)
	}
	// Closing the proxy ends its connections and removes the socket.
	done := make(chan struct{})
	go func() { p.close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("close did not return with a connection open")
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(buf); err == nil {
		t.Errorf("read %d bytes after close", n)
	}
	if _, err := os.Stat(p.dir); !os.IsNotExist(err) {
		t.Errorf("proxy dir left: %v", err)
	}
}

func TestSSHProxyNoAgent(t *testing.T) {
	p, err := startSSHProxy(filepath.Join(t.TempDir(), "missing.sock"), os.Getuid(), os.Getgid(), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	c, err := net.Dial("unix", p.path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("a connection to a missing agent stayed open")
	}
}
