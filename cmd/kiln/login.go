package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	dockerconfig "github.com/docker/cli/cli/config"
	"github.com/docker/cli/cli/config/configfile"
	dockertypes "github.com/docker/cli/cli/config/types"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/kiln-build/kiln/exporter/registry"
)

// defaultServer is the registry login and logout use when given none.
const defaultServer = "docker.io"

func (c *cli) loginCommand() *cobra.Command {
	var (
		user, password string
		passwordStdin  bool
		insecure       []string
	)
	cmd := &cobra.Command{
		Use:   "login [OPTIONS] [SERVER]",
		Short: "Log in to a registry (default docker.io)",
		Long: `Check a user name and password (or token) with the registry and save them
in the Docker config (~/.docker/config.json, or $DOCKER_CONFIG), as docker
login does: in its credential helper when one is configured, else base64
in "auths". kiln pull, push and build use them, and so does docker.`,
		Example: `  kiln login -u me ghcr.io
  echo "$TOKEN" | kiln login -u me --password-stdin ghcr.io
  kiln login -u admin -p secret --insecure-registry registry.lan:5000 registry.lan:5000`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			opts := registry.Options{Insecure: insecure}
			srv := defaultServer
			if len(args) == 1 {
				srv = args[0]
			}
			server, err := registry.ParseServer(srv, opts)
			if err != nil {
				return err
			}
			if password != "" && passwordStdin {
				return errors.New("--password and --password-stdin cannot be used together")
			}
			if password != "" {
				fmt.Fprintln(c.stderr, "WARNING! Using --password on the command line is insecure: use --password-stdin.")
			}
			if passwordStdin {
				if user == "" {
					return errors.New("--password-stdin needs a user name: add -u USER")
				}
				b, err := io.ReadAll(c.stdin)
				if err != nil {
					return fmt.Errorf("read the password from stdin: %w", err)
				}
				password = strings.TrimRight(string(b), "\r\n")
			}
			if user == "" {
				if user, err = c.prompt("Username: ", false); err != nil {
					return err
				}
			}
			if password == "" {
				if password, err = c.prompt("Password: ", true); err != nil {
					return err
				}
			}
			if user == "" || password == "" {
				return errors.New("a user name and a password are needed")
			}
			if err := registry.CheckLogin(ctx, server, authn.AuthConfig{Username: user, Password: password}, opts); err != nil {
				return err
			}
			cf, err := dockerconfig.Load(dockerconfig.Dir())
			if err != nil {
				return fmt.Errorf("read the Docker config: %w", err)
			}
			err = cf.GetCredentialsStore(server.AuthKey).Store(dockertypes.AuthConfig{
				Username:      user,
				Password:      password,
				ServerAddress: server.AuthKey,
			})
			if err != nil {
				return fmt.Errorf("save the credentials for %s in %s: %w", server, cf.Filename, err)
			}
			fmt.Fprintln(c.stdout, "Login Succeeded")
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&user, "username", "u", "", "user name")
	fl.StringVarP(&password, "password", "p", "", "password or token (prefer --password-stdin)")
	fl.BoolVar(&passwordStdin, "password-stdin", false, "read the password or token from stdin")
	fl.StringArrayVar(&insecure, "insecure-registry", nil, insecureFlagUsage)
	return cmd
}

func (c *cli) logoutCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "logout [SERVER]",
		Short: "Remove the saved credentials of a registry (default docker.io)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			srv := defaultServer
			if len(args) == 1 {
				srv = args[0]
			}
			server, err := registry.ParseServer(srv, registry.Options{})
			if err != nil {
				return err
			}
			cf, err := dockerconfig.Load(dockerconfig.Dir())
			if err != nil {
				return fmt.Errorf("read the Docker config: %w", err)
			}
			if !hasCredentials(cf, server.AuthKey) {
				fmt.Fprintf(c.stdout, "Not logged in to %s\n", server)
				return nil
			}
			if err := cf.GetCredentialsStore(server.AuthKey).Erase(server.AuthKey); err != nil {
				return fmt.Errorf("remove the credentials for %s from %s: %w", server, cf.Filename, err)
			}
			fmt.Fprintf(c.stdout, "Removing login credentials for %s\n", server)
			return nil
		},
	}
}

// hasCredentials reports whether the Docker config may hold credentials
// for key: in "auths", or in a credential helper that would know.
func hasCredentials(cf *configfile.ConfigFile, key string) bool {
	if _, ok := cf.AuthConfigs[key]; ok {
		return true
	}
	return cf.CredentialsStore != "" || cf.CredentialHelpers[key] != ""
}

// prompt asks on the terminal; it fails when stdin is not one.
func (c *cli) prompt(label string, secret bool) (string, error) {
	f, ok := c.stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		what := "user name: add -u USER"
		if secret {
			what = "password: add --password-stdin and pipe it in"
		}
		return "", errors.New("stdin is not a terminal to ask for the " + what)
	}
	fmt.Fprint(c.stderr, label)
	if secret {
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(c.stderr)
		if err != nil {
			return "", fmt.Errorf("read the password: %w", err)
		}
		return string(b), nil
	}
	line, err := bufio.NewReader(f).ReadString('\n')
	if err != nil && line == "" {
		return "", fmt.Errorf("read the user name: %w", err)
	}
	return strings.TrimSpace(line), nil
}
