// Package sshagent serves private key files as an SSH agent on a unix
// socket, for kiln build --ssh ID=KEYFILE: the build then forwards that
// socket like any other agent's.
package sshagent

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// Agent is a running agent holding some keys.
type Agent struct {
	// Socket is the agent's unix socket.
	Socket string
	dir    string
	ln     net.Listener
}

// Serve loads the private keys in files (OpenSSH or PEM, without a
// passphrase) and serves them on a new socket until Close.
func Serve(files []string) (*Agent, error) {
	keyring := agent.NewKeyring()
	for _, f := range files {
		if fi, err := os.Stat(f); err != nil {
			return nil, err
		} else if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("%s: not a private key file (an agent's socket goes alone)", f)
		}
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		key, err := ssh.ParseRawPrivateKey(data)
		var missing *ssh.PassphraseMissingError
		if errors.As(err, &missing) {
			return nil, fmt.Errorf("%s is protected by a passphrase: add it to ssh-agent and give the agent's socket", f)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: not a private key: %w", f, err)
		}
		if err := keyring.Add(agent.AddedKey{PrivateKey: key, Comment: f}); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
	}
	dir, err := os.MkdirTemp("", "kiln-agent-")
	if err != nil {
		return nil, err
	}
	a := &Agent{dir: dir, Socket: filepath.Join(dir, "agent.sock")}
	if a.ln, err = net.Listen("unix", a.Socket); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	go func() {
		for {
			c, err := a.ln.Accept()
			if err != nil {
				return // closed
			}
			go func() {
				defer c.Close()
				_ = agent.ServeAgent(keyring, c)
			}()
		}
	}()
	return a, nil
}

// Close stops accepting connections and removes the socket; connections
// still open end when their clients close them.
func (a *Agent) Close() error {
	err := a.ln.Close()
	return errors.Join(err, os.RemoveAll(a.dir))
}
