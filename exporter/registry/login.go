package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// dockerHubAuthKey is the key Docker keeps Docker Hub credentials under in
// its config file.
const dockerHubAuthKey = "https://index.docker.io/v1/"

// Server is a registry as kiln login names it.
type Server struct {
	// Registry is the host[:port] requests go to ("index.docker.io" for
	// Docker Hub).
	Registry name.Registry
	// AuthKey is the key of its credentials in the Docker config's
	// "auths" ("https://index.docker.io/v1/" for Docker Hub, host[:port]
	// otherwise), as docker login writes it.
	AuthKey string
}

// ParseServer reads a registry the way docker login does: "docker.io",
// "registry-1.docker.io" and "https://index.docker.io/v1/" are Docker
// Hub; "https://r:5000/" is r:5000.
func ParseServer(s string, opts Options) (Server, error) {
	host := cleanHost(s)
	if host == "" {
		return Server{}, fmt.Errorf("no registry given")
	}
	switch host {
	case dockerHub, "index.docker.io", "registry-1.docker.io":
		reg, err := name.NewRegistry(name.DefaultRegistry)
		if err != nil {
			return Server{}, err
		}
		return Server{Registry: reg, AuthKey: dockerHubAuthKey}, nil
	}
	var nopts []name.Option
	if opts.insecure(host) {
		nopts = append(nopts, name.Insecure)
	}
	reg, err := name.NewRegistry(host, append(nopts, name.StrictValidation)...)
	if err != nil {
		return Server{}, fmt.Errorf("invalid registry %q: %w", s, err)
	}
	return Server{Registry: reg, AuthKey: reg.RegistryStr()}, nil
}

// String shows the server as users write it.
func (s Server) String() string { return registryName(s.Registry) }

// CheckLogin checks that the registry accepts the credentials: it goes
// through the registry's authentication handshake (a token request for
// registries that use tokens) and asks for /v2/. It returns an error
// wrapping ErrUnauthorized when the registry refuses them.
func CheckLogin(ctx context.Context, server Server, auth authn.AuthConfig, opts Options) error {
	reg := server.String()
	fail := func(err error) error { return fmt.Errorf("log in to %s: %w", reg, err) }
	rt, err := transport.NewWithContext(ctx, server.Registry, authn.FromConfig(auth), opts.transport(), nil)
	if err != nil {
		return fail(loginError(err, reg))
	}
	// The transport picks http or https from its ping; ask for the same
	// scheme so the URL is right either way.
	u := "https://" + server.Registry.RegistryStr() + "/v2/"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fail(err)
	}
	resp, err := (&http.Client{Transport: rt}).Do(req)
	if err != nil {
		return fail(loginError(err, reg))
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if err := transport.CheckError(resp, http.StatusOK); err != nil {
		return fail(loginError(err, reg))
	}
	return nil
}

// loginError says "wrong user name or password" for what a registry
// answers to bad credentials.
func loginError(err error, reg string) error {
	var te *transport.Error
	if errors.As(err, &te) && (te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden) {
		return fmt.Errorf("%w: the registry refused the user name or password: %w", ErrUnauthorized, err)
	}
	return explain(err, reg, "registry "+reg)
}
