package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/kiln-build/kiln/cmd/internal/app"
	"github.com/kiln-build/kiln/cmd/internal/progressui"
	"github.com/kiln-build/kiln/cmd/internal/sshagent"
	"github.com/kiln-build/kiln/executor"
	"github.com/kiln-build/kiln/exporter"
	"github.com/kiln-build/kiln/exporter/registry"
	"github.com/kiln-build/kiln/solver"
)

type buildFlags struct {
	tags      []string
	file      string
	buildArgs []string
	target    string
	noCache   bool
	labels    []string
	iidfile   string
	network   string
	progress  string
	quiet     bool
	jobs      int
	platform  string
	pull      string
	push      bool
	outputs   []string
	cacheFrom []string
	cacheTo   []string
	compress  string
	level     int
	insecure  []string
	secrets   []string
	ssh       []string
	addHosts  []string
}

func (c *cli) buildCommand() *cobra.Command {
	var f buildFlags
	cmd := &cobra.Command{
		Use:   "build [OPTIONS] PATH | -",
		Short: "Build an image from a Dockerfile",
		Example: `  kiln build -t app:1 .
  kiln build -f docker/Dockerfile --build-arg VERSION=2 --target release -t app:2 .
  tar -c . | kiln build -t app:1 -`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.build(cmd, args[0], &f)
		},
	}
	fl := cmd.Flags()
	fl.StringArrayVarP(&f.tags, "tag", "t", nil, "name and optionally a tag (name:tag); repeatable")
	fl.StringVarP(&f.file, "file", "f", "", "Dockerfile path (default PATH/Dockerfile; - for stdin)")
	fl.StringArrayVar(&f.buildArgs, "build-arg", nil, "build-time variable KEY=VALUE (KEY alone takes it from the environment)")
	fl.StringVar(&f.target, "target", "", "build this stage")
	fl.BoolVar(&f.noCache, "no-cache", false, "do not use the cache")
	fl.StringArrayVar(&f.labels, "label", nil, "set a label KEY=VALUE on the image")
	fl.StringVar(&f.iidfile, "iidfile", "", "write the image ID to this file")
	fl.StringVar(&f.network, "network", "default", "network of RUN steps: default (host), host or none")
	fl.StringVar(&f.progress, "progress", "auto", "progress output: auto, tty, plain or quiet")
	fl.BoolVarP(&f.quiet, "quiet", "q", false, "print only the image ID")
	fl.IntVar(&f.jobs, "jobs", 0, "steps run in parallel (default: max(8, 2 x CPUs))")
	fl.StringVar(&f.platform, "platform", "", "target platform (only linux/amd64)")
	fl.StringVar(&f.pull, "pull", "missing", "when to pull base images from their registry: missing, always or never (--pull alone: always)")
	fl.Lookup("pull").NoOptDefVal = "always"
	fl.BoolVar(&f.push, "push", false, "push each -t name to its registry after the build")
	fl.StringVar(&f.compress, "compression", "gzip", "layer compression for --push and type=registry outputs: gzip, zstd or none")
	fl.IntVar(&f.level, "compression-level", 0, "compression level (0: the algorithm's default)")
	fl.StringArrayVar(&f.cacheFrom, "cache-from", nil, "import build cache: type=registry,ref=REF | type=local,src=DIR | IMAGE (inline cache)")
	fl.StringArrayVar(&f.cacheTo, "cache-to", nil, "export build cache: type=registry,ref=REF[,mode=min|max] | type=local,dest=DIR[,mode=...] | type=inline")
	fl.StringArrayVarP(&f.outputs, "output", "o", nil, "also write the result: type=oci|docker,dest=FILE.tar, type=local,dest=DIR, type=registry,name=REF (or a bare DIR)")
	fl.StringArrayVar(&f.insecure, "insecure-registry", nil, insecureFlagUsage)
	fl.StringArrayVar(&f.addHosts, "add-host", nil, "add a host to RUN steps' /etc/hosts: NAME:IP")
	fl.Bool("rm", true, "ignored, as by Docker's BuildKit builder (kept for scripts written for the classic builder)")
	fl.Bool("force-rm", false, "ignored, as by Docker's BuildKit builder")
	addIgnoredBuildFlags(fl)
	fl.Bool("squash", false, "not supported (Docker 20.10 refuses it too, without experimental features)")
	fl.StringArray("security-opt", nil, "not supported for builds (Docker 20.10 refuses it too)")
	fl.StringArrayVar(&f.ssh, "ssh", nil, "an SSH agent for RUN --mount=type=ssh: default|ID[=SOCKET|KEYFILE[,KEYFILE...]] (default: $SSH_AUTH_SOCK)")
	fl.StringArrayVar(&f.secrets, "secret", nil, "a secret for RUN --mount=type=secret: id=ID,src=FILE or id=ID,env=VAR (id=ID alone: the variable ID, else the file ID)")
	return cmd
}

// addIgnoredBuildFlags adds the resource and isolation flags of docker
// build's classic builder, which Docker 20.10 takes and its BuildKit
// builder ignores: scripts that pass them keep working.
func addIgnoredBuildFlags(fl *pflag.FlagSet) {
	const ignored = "ignored, as by Docker's BuildKit builder"
	fl.Bool("compress", false, ignored)
	fl.Bool("disable-content-trust", true, ignored)
	fl.StringP("memory", "m", "", ignored)
	fl.String("memory-swap", "", ignored)
	fl.String("shm-size", "", ignored)
	fl.Int64P("cpu-shares", "c", 0, ignored)
	fl.Int64("cpu-period", 0, ignored)
	fl.Int64("cpu-quota", 0, ignored)
	fl.String("cpuset-cpus", "", ignored)
	fl.String("cpuset-mems", "", ignored)
	fl.String("isolation", "", ignored)
	fl.String("cgroup-parent", "", ignored)
	fl.StringArray("ulimit", nil, ignored)
}

func (c *cli) build(cmd *cobra.Command, contextDir string, f *buildFlags) error {
	ctx := cmd.Context()
	if fl := cmd.Flags(); fl.Changed("squash") {
		return errors.New("--squash is not supported: kiln keeps an image's layers (Docker 20.10 accepts it only with experimental features)")
	} else if fl.Changed("security-opt") {
		return errors.New("--security-opt: setting security options on build is not supported (RUN steps get Docker's default profile)")
	}
	if f.platform != "" && f.platform != "linux/amd64" {
		return fmt.Errorf("--platform=%s: kiln builds for linux/amd64 only", f.platform)
	}
	network := executor.NetworkHost
	switch f.network {
	case "", "default", "host":
	case "none":
		network = executor.NetworkNone
	default:
		return fmt.Errorf("--network=%s: want default, host or none", f.network)
	}
	buildArgs, err := parseKV(f.buildArgs, true)
	if err != nil {
		return fmt.Errorf("--build-arg: %w", err)
	}
	labels, err := parseKV(f.labels, false)
	if err != nil {
		return fmt.Errorf("--label: %w", err)
	}
	ssh, closeAgents, err := parseSSH(f.ssh)
	if err != nil {
		return err
	}
	defer closeAgents()
	hosts, err := parseAddHosts(f.addHosts)
	if err != nil {
		return err
	}
	secrets, err := parseSecrets(f.secrets)
	if err != nil {
		return err
	}
	mode := progressui.Mode(f.progress)
	switch mode {
	case progressui.ModeAuto:
		mode = progressui.ModePlain
		if fd, ok := c.stderr.(*os.File); ok && term.IsTerminal(int(fd.Fd())) && os.Getenv("CI") == "" {
			mode = progressui.ModeTTY
		}
	case progressui.ModeTTY, progressui.ModePlain, progressui.ModeQuiet:
	default:
		return fmt.Errorf("--progress=%s: want auto, tty, plain or quiet", f.progress)
	}
	if f.quiet {
		mode = progressui.ModeQuiet
	}
	pull, err := app.ParsePullPolicy(f.pull)
	if err != nil {
		return err
	}
	var outputs []app.Output
	for _, o := range f.outputs {
		out, err := app.ParseOutput(o)
		if err != nil {
			return err
		}
		outputs = append(outputs, out)
	}
	var cacheFrom, cacheTo []app.CacheSpec
	for _, v := range f.cacheFrom {
		c, err := app.ParseCacheSpec(v)
		if err != nil {
			return fmt.Errorf("--cache-from: %w", err)
		}
		cacheFrom = append(cacheFrom, c)
	}
	for _, v := range f.cacheTo {
		c, err := app.ParseCacheSpec(v)
		if err != nil {
			return fmt.Errorf("--cache-to: %w", err)
		}
		cacheTo = append(cacheTo, c)
	}
	if f.push && len(f.tags) == 0 {
		return errors.New("--push needs a name to push to: add -t NAME")
	}
	regOpts := registry.Options{Insecure: f.insecure, Compression: f.compress, CompressionLevel: f.level}
	a, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer a.Close()
	display := progressui.New(mode, c.stderr)
	c.tail = func(err error) []string {
		var se *solver.StepError
		if errors.As(err, &se) {
			return display.Tail(se.Vertex)
		}
		return nil
	}
	res, err := a.Build(ctx, app.BuildRequest{
		ContextDir: contextDir,
		Dockerfile: f.file,
		Tags:       f.tags,
		BuildArgs:  buildArgs,
		Target:     f.target,
		NoCache:    f.noCache,
		Labels:     labels,
		Network:    network,
		Secrets:    secrets,
		SSH:        ssh,
		ExtraHosts: hosts,
		Jobs:       f.jobs,
		Registry:   app.RegistryOptions{Pull: pull, Registry: regOpts},
		CacheFrom:  cacheFrom,
		CacheTo:    cacheTo,
		Events:     display.Event,
		Warn: func(s string) {
			if !f.quiet {
				fmt.Fprintln(c.stderr, "WARNING:", s)
			}
		},
		Stdin: c.stdin,
	})
	display.Close()
	if err != nil {
		return err
	}
	id := string(res.Image.ID)
	for _, o := range outputs {
		if err := c.writeOutput(ctx, a, res, o, regOpts); err != nil {
			return err
		}
	}
	if f.iidfile != "" {
		if err := os.WriteFile(f.iidfile, []byte(id), 0o644); err != nil {
			return fmt.Errorf("--iidfile: %w", err)
		}
	}
	if f.quiet {
		fmt.Fprintln(c.stdout, id)
		if f.push {
			return c.pushTags(ctx, a, res.Tags, regOpts, io.Discard)
		}
		return nil
	}
	fmt.Fprintf(c.stderr, "writing image %s done\n", id)
	for _, t := range res.Tags {
		fmt.Fprintf(c.stderr, "naming to %s done\n", t)
	}
	if f.push {
		return c.pushTags(ctx, a, res.Tags, regOpts, c.stderr)
	}
	return nil
}

// writeOutput writes one --output destination.
func (c *cli) writeOutput(ctx context.Context, a *app.App, res *app.BuildResult, o app.Output, opts registry.Options) error {
	if o.Type != "registry" {
		return a.WriteOutput(ctx, res.Image, res.Tags, o)
	}
	name, err := exporter.NormalizeName(o.Name)
	if err != nil {
		return fmt.Errorf("--output name=%s: %w", o.Name, err)
	}
	if err := a.Store.Tag(ctx, name, res.Image.ManifestDigest); err != nil {
		return err
	}
	d, err := a.Push(ctx, name, opts)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stderr, "pushing %s with digest %s done\n", o.Name, d)
	return nil
}

// pushTags pushes the names a build tagged (build --push).
func (c *cli) pushTags(ctx context.Context, a *app.App, tags []string, opts registry.Options, out io.Writer) error {
	for _, t := range tags {
		d, err := a.Push(ctx, t, opts)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "pushing %s with digest %s done\n", t, d)
	}
	return nil
}

// parseKV parses KEY=VALUE flags; with fromEnv, KEY alone takes the value
// from the environment (and is skipped when unset), like docker.
func parseKV(list []string, fromEnv bool) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range list {
		k, v, ok := strings.Cut(kv, "=")
		if k == "" {
			return nil, fmt.Errorf("%q: want KEY=VALUE", kv)
		}
		if !ok {
			if !fromEnv {
				out[k] = ""
				continue
			}
			ev, set := os.LookupEnv(k)
			if !set {
				continue
			}
			v = ev
		}
		out[k] = v
	}
	return out, nil
}

// parseSecrets reads the --secret flags, as docker build takes them:
// id=ID with src=FILE (or source=), env=VAR, or neither (the environment
// variable ID when set, else the file ID); type=file|env may say which.
func parseSecrets(specs []string) (map[string][]byte, error) {
	out := map[string][]byte{}
	for _, spec := range specs {
		var id, src, env, typ string
		for _, field := range strings.Split(spec, ",") {
			k, v, ok := strings.Cut(field, "=")
			if !ok {
				return nil, fmt.Errorf("--secret %s: %q is not KEY=VALUE", spec, field)
			}
			switch strings.ToLower(k) {
			case "id":
				id = v
			case "src", "source":
				src = v
			case "env":
				env = v
			case "type":
				typ = v
			default:
				return nil, fmt.Errorf("--secret %s: unknown key %q (want id, src, env or type)", spec, k)
			}
		}
		if id == "" {
			return nil, fmt.Errorf("--secret %s: no id", spec)
		}
		switch {
		case typ == "env" && env == "":
			env = cmp.Or(src, id)
			src = ""
		case typ != "" && typ != "file" && typ != "env":
			return nil, fmt.Errorf("--secret %s: unknown type %q (want file or env)", spec, typ)
		case src == "" && env == "":
			if _, ok := os.LookupEnv(id); ok && typ != "file" {
				env = id
			} else {
				src = id
			}
		}
		if env != "" {
			v, ok := os.LookupEnv(env)
			if !ok {
				return nil, fmt.Errorf("--secret %s: the environment variable %s is not set", spec, env)
			}
			out[id] = []byte(v)
			continue
		}
		data, err := os.ReadFile(src)
		if err != nil {
			return nil, fmt.Errorf("--secret %s: %w", spec, err)
		}
		out[id] = data
	}
	return out, nil
}

// parseSSH reads the --ssh flags, as docker build takes them: ID, ID=SOCKET
// or ID=KEYFILE[,KEYFILE...], where nothing after the id means
// $SSH_AUTH_SOCK. Key files are served by an agent of kiln's own until
// closeAgents is called.
func parseSSH(specs []string) (socks map[string]string, closeAgents func(), err error) {
	socks = map[string]string{}
	var agents []*sshagent.Agent
	closeAgents = func() {
		for _, a := range agents {
			a.Close()
		}
	}
	defer func() {
		if err != nil {
			closeAgents()
		}
	}()
	for _, spec := range specs {
		id, paths, _ := strings.Cut(spec, "=")
		if id == "" {
			return nil, closeAgents, fmt.Errorf("--ssh %s: no id", spec)
		}
		if paths == "" {
			paths = os.Getenv("SSH_AUTH_SOCK")
			if paths == "" {
				return nil, closeAgents, fmt.Errorf("--ssh %s: no socket or key given and SSH_AUTH_SOCK is not set (start ssh-agent, or give ID=SOCKET or ID=KEYFILE)", spec)
			}
		}
		files := strings.Split(paths, ",")
		if len(files) == 1 {
			fi, err := os.Stat(files[0])
			if err != nil {
				return nil, closeAgents, fmt.Errorf("--ssh %s: %w", spec, err)
			}
			if fi.Mode().Type() == os.ModeSocket {
				socks[id] = files[0]
				continue
			}
		}
		a, err := sshagent.Serve(files)
		if err != nil {
			return nil, closeAgents, fmt.Errorf("--ssh %s: %w", spec, err)
		}
		agents = append(agents, a)
		socks[id] = a.Socket
	}
	return socks, closeAgents, nil
}

// parseAddHosts reads the --add-host flags (NAME:IP, or NAME=IP as newer
// Docker takes them) into "NAME IP" entries.
func parseAddHosts(specs []string) ([]string, error) {
	var out []string
	for _, spec := range specs {
		name, ip, err := executor.ParseExtraHost(spec)
		if err != nil {
			return nil, fmt.Errorf("--add-host: %w", err)
		}
		out = append(out, name+" "+ip.String())
	}
	return out, nil
}
