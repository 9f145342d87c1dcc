package ops

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/kiln-build/kiln/cache"
	"github.com/kiln-build/kiln/executor"
	"github.com/kiln-build/kiln/solver"
	"github.com/kiln-build/kiln/solver/ops/fileop"
)

// Run executes a command on top of its first input's filesystem and
// commits the changes as a new layer. Further inputs are the filesystems
// its bind mounts show.
type Run struct {
	Args     []string         `json:"args"`
	Env      []string         `json:"env"`
	Cwd      string           `json:"cwd"`
	User     string           `json:"user,omitempty"`
	Network  executor.Network `json:"network,omitempty"`
	Hostname string           `json:"hostname,omitempty"`
	// ExtraHosts are added to the step's /etc/hosts ("name ip",
	// kiln build --add-host).
	ExtraHosts []string   `json:"extraHosts,omitempty"`
	Mounts     []RunMount `json:"mounts,omitempty"`
	// Proxy holds the proxy variables the build args give (HTTP_PROXY
	// and http_proxy, ...): set over Env when the command runs and never
	// part of the cache key, as in Docker.
	Proxy []string `json:"-"`
}

// RunMount is a RUN --mount: a filesystem the command sees at Target,
// never part of the layer. It is part of the cache key; what a bind shows
// enters it through the input's key, and a cache or a secret's content
// does not, as in Docker.
type RunMount struct {
	// Type is "bind" (a path in another input's filesystem), "cache" (a
	// directory the store keeps across builds), "tmpfs", "secret" or
	// "ssh" (the SSH agent socket given for the id CacheID, through a
	// socket owned by UID:GID with Mode; without one nothing is mounted,
	// or the step fails when Required).
	Type     string `json:"type"`
	Target   string `json:"target"`
	ReadOnly bool   `json:"readonly,omitempty"`
	// Input is the index among the vertex's inputs (1 or more) of a
	// bind's filesystem, and Source the path in it ("/" for all of it).
	// A cache with an Input starts as a copy of that path (from=), and
	// is a cache of its own for each such filesystem and path. For a
	// secret, Source is its id.
	Input  int    `json:"input,omitempty"`
	Source string `json:"source,omitempty"`
	// CacheID names a cache, Sharing says how steps share it (see
	// cache.CacheMountOptions); Mode, UID and GID are a cache directory's
	// when it is created, and a secret file's.
	CacheID string      `json:"id,omitempty"`
	Sharing string      `json:"sharing,omitempty"`
	Mode    fs.FileMode `json:"mode,omitempty"`
	UID     int         `json:"uid,omitempty"`
	GID     int         `json:"gid,omitempty"`
	// Required fails the step when the secret was not given.
	Required bool `json:"required,omitempty"`
}

// buildHostname is the hostname of RUN steps, BuildKit's.
const buildHostname = "buildkitsandbox"

// Kind implements solver.Op.
func (o *Run) Kind() string { return "run" }

// CacheKey implements solver.Op. Proxy is left out.
func (o *Run) CacheKey(context.Context) (digest.Digest, error) {
	b, err := json.Marshal(o)
	if err != nil {
		return "", err
	}
	return digest.FromBytes(b), nil
}

// env is the command's environment: Env, with SSH_AUTH_SOCK set to the
// first SSH mount's target unless Env has it (as BuildKit does), and Proxy
// set over it.
func (o *Run) env() []string {
	env := o.Env
	for _, m := range o.Mounts {
		if m.Type != "ssh" {
			continue
		}
		if !slices.ContainsFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "SSH_AUTH_SOCK=") }) {
			env = append(env[:len(env):len(env)], "SSH_AUTH_SOCK="+m.Target)
		}
		break
	}
	if len(o.Proxy) == 0 {
		return env
	}
	out := make([]string, 0, len(env)+len(o.Proxy))
	override := map[string]bool{}
	for _, kv := range o.Proxy {
		k, _, _ := strings.Cut(kv, "=")
		override[k] = true
	}
	for _, kv := range env {
		if k, _, _ := strings.Cut(kv, "="); !override[k] {
			out = append(out, kv)
		}
	}
	return append(out, o.Proxy...)
}

// Run implements solver.Op.
func (o *Run) Run(ctx context.Context, rc *solver.RunContext, inputs []solver.Result) (solver.Result, error) {
	if len(inputs) < 1 {
		return solver.Result{}, fmt.Errorf("run: no input")
	}
	mounts, release, err := o.mounts(ctx, rc, inputs)
	defer release()
	if err != nil {
		return solver.Result{}, err
	}
	active, err := rc.Store.Prepare(ctx, inputs[0].Chain)
	if err != nil {
		return solver.Result{}, err
	}
	defer active.Discard()
	hostname := o.Hostname
	if hostname == "" {
		hostname = buildHostname
	}
	spec := executor.Spec{
		Rootfs:      executor.Rootfs{LowerDirs: active.LowerDirs, UpperDir: active.UpperDir, WorkDir: active.WorkDir, Once: true},
		Hostname:    hostname,
		ExtraHosts:  o.ExtraHosts,
		Network:     o.Network,
		Mounts:      mounts,
		ReadOnlyEtc: true,
		Process: &executor.Process{
			Args:       o.Args,
			Env:        o.env(),
			Cwd:        o.Cwd,
			User:       o.User,
			Stdout:     rc.Stdout,
			Stderr:     rc.Stderr,
			EmptyStdin: true,
		},
	}
	if err := rc.Executor.Run(ctx, spec); err != nil {
		return solver.Result{}, err
	}
	chain, err := active.Commit(ctx)
	if err != nil {
		return solver.Result{}, fmt.Errorf("commit layer: %w", err)
	}
	return solver.Result{Chain: chain}, nil
}

// mounts prepares the executor mounts of o.Mounts; release ends their use
// (cache locks) and must be called even on an error.
func (o *Run) mounts(ctx context.Context, rc *solver.RunContext, inputs []solver.Result) ([]executor.Mount, func(), error) {
	var releases []func()
	release := func() {
		for _, r := range releases {
			r()
		}
	}
	caches, err := o.takeCaches(ctx, rc, inputs, &releases)
	if err != nil {
		return nil, release, err
	}
	var out []executor.Mount
	for i, m := range o.Mounts {
		switch m.Type {
		case "bind":
			if m.Input < 1 || m.Input >= len(inputs) {
				return nil, release, fmt.Errorf("mount %s: no input %d", m.Target, m.Input)
			}
			dirs, err := rc.Store.Snapshot(ctx, inputs[m.Input].Chain)
			if err != nil {
				return nil, release, fmt.Errorf("mount %s: %w", m.Target, err)
			}
			out = append(out, executor.Mount{Type: "layers", LowerDirs: dirs, Source: m.Source, Target: m.Target, ReadOnly: m.ReadOnly})
		case "cache":
			out = append(out, executor.Mount{Type: "bind", Source: caches[i], Target: m.Target, ReadOnly: m.ReadOnly})
		case "ssh":
			agent, ok := rc.SSH[m.CacheID]
			if !ok {
				if m.Required {
					return nil, release, fmt.Errorf("no SSH key %q forwarded from the client (kiln build --ssh %s)", m.CacheID, m.CacheID)
				}
				continue
			}
			p, err := startSSHProxy(agent, m.UID, m.GID, m.Mode)
			if err != nil {
				return nil, release, fmt.Errorf("mount %s: %w", m.Target, err)
			}
			releases = append(releases, p.close)
			out = append(out, executor.Mount{Type: "bind", Source: p.path, Target: m.Target})
		case "tmpfs":
			// BuildKit's RUN tmpfs is nosuid only (devices work).
			out = append(out, executor.Mount{Type: "tmpfs", Target: m.Target, Options: []string{"dev"}})
		case "secret":
			data, ok := rc.Secrets[m.Source]
			if !ok {
				if m.Required {
					return nil, release, fmt.Errorf("secret %q is required but was not given (kiln build --secret id=%s,src=FILE)", m.Source, m.Source)
				}
				continue
			}
			// Written by the container's init to a tmpfs of its own: the
			// secret never touches the host's disk or /dev/shm.
			// Without a mode the executor's default, 0400, applies.
			opts := []string{"uid=" + strconv.Itoa(m.UID), "gid=" + strconv.Itoa(m.GID)}
			if m.Mode != 0 {
				opts = append(opts, fmt.Sprintf("mode=%o", m.Mode.Perm()))
			}
			out = append(out, executor.Mount{Type: "file", Data: data, Target: m.Target, ReadOnly: true, Options: opts})
		default:
			return nil, release, fmt.Errorf("mount %s: unsupported type %q", m.Target, m.Type)
		}
	}
	for i := range out {
		// Docker 20.10's builder leaves the directories made as mount
		// points in the layer (and removes empty file mount points).
		out[i].KeepMountPoint = true
	}
	return out, release, nil
}

// sharingRank orders sharing modes from the most to the least permissive.
func sharingRank(s string) int {
	switch s {
	case cache.SharingLocked:
		return 2
	case cache.SharingPrivate:
		return 1
	}
	return 0
}

// cacheKey names the cache a cache mount uses in the store: its id, and
// for one seeded from another filesystem (from=) that filesystem's chain ID
// and the path, as BuildKit keeps a cache per id and base.
func cacheKey(m RunMount, inputs []solver.Result) (string, error) {
	if m.Input == 0 {
		return m.CacheID, nil
	}
	if m.Input < 1 || m.Input >= len(inputs) {
		return "", fmt.Errorf("mount %s: no input %d", m.Target, m.Input)
	}
	return m.CacheID + "\x00from=" + string(inputs[m.Input].Chain.ChainID()) + ":" + m.Source, nil
}

// takeCaches takes the step's cache mounts once per cache, in key order,
// with the strictest sharing its mounts of that cache ask for: so a step
// never waits on a lock of its own, and two steps that use the same caches
// take them in the same order and cannot wait on each other. It returns
// the directory of each cache mount by its index in o.Mounts and adds the
// release funcs to releases.
func (o *Run) takeCaches(ctx context.Context, rc *solver.RunContext, inputs []solver.Result, releases *[]func()) (map[int]string, error) {
	want := map[string]RunMount{}
	keys := map[int]string{} // mount index → cache key
	for i, m := range o.Mounts {
		if m.Type != "cache" {
			continue
		}
		key, err := cacheKey(m, inputs)
		if err != nil {
			return nil, err
		}
		keys[i] = key
		if prev, ok := want[key]; ok && sharingRank(prev.Sharing) >= sharingRank(m.Sharing) {
			continue
		}
		want[key] = m
	}
	ids := make([]string, 0, len(want))
	for id := range want {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	dirs := map[string]string{}
	for _, id := range ids {
		m := want[id]
		opts := cache.CacheMountOptions{Sharing: m.Sharing, Mode: m.Mode, UID: m.UID, GID: m.GID}
		if m.Input > 0 {
			from := inputs[m.Input].Chain
			opts.Seed = func(ctx context.Context, dir, work string) error {
				return seedCache(ctx, rc, from, m.Source, dir, work)
			}
		}
		dir, done, err := rc.Store.CacheMount(ctx, id, opts)
		if err != nil {
			return nil, fmt.Errorf("mount %s: %w", m.Target, err)
		}
		*releases = append(*releases, done)
		dirs[id] = dir
	}
	byMount := make(map[int]string, len(keys))
	for i, key := range keys {
		byMount[i] = dirs[key]
	}
	return byMount, nil
}

// seedCache copies src in the filesystem chain into dir, a new cache
// mount's directory, keeping owners and modes: the directory is the upper
// of an empty root whose copy function reads chain (work is its overlay
// work dir).
func seedCache(ctx context.Context, rc *solver.RunContext, chain cache.Chain, src, dir, work string) error {
	dirs, err := rc.Store.Snapshot(ctx, chain)
	if err != nil {
		return err
	}
	payload, err := json.Marshal(fileop.Action{Copy: &fileop.Copy{Sources: []string{src}, Dest: "/", PreserveOwner: true}})
	if err != nil {
		return err
	}
	spec := executor.Spec{
		Rootfs: executor.Rootfs{UpperDir: dir, WorkDir: work, Once: true},
		Func:   &executor.Func{Name: fileop.HandlerName, Payload: payload, Stdout: rc.Stdout, Stderr: rc.Stderr},
		Inputs: []executor.Input{{LowerDirs: dirs}},
	}
	if err := rc.Executor.Run(ctx, spec); err != nil {
		return fmt.Errorf("seed the cache from %s: %w", src, err)
	}
	return nil
}
