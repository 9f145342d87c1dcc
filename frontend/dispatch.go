package frontend

import (
	"context"
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"

	"github.com/kiln-build/kiln/executor"
	"github.com/kiln-build/kiln/solver"
	"github.com/kiln-build/kiln/solver/ops"
	"github.com/kiln-build/kiln/solver/ops/fileop"
)

// dispatch applies one instruction to the stage.
func (c *converter) dispatch(ctx context.Context, s *stageState, cmd instructions.Command) error {
	if isStep(cmd) {
		s.step++
	}
	if ex, ok := cmd.(instructions.SupportsSingleWordExpansion); ok {
		expand := func(word string) (string, error) { return c.expand(word, s.env) }
		if _, run := cmd.(*instructions.RunCommand); run {
			// RUN expands only its --mount options, which Docker 20.10
			// takes as written: target=$T mounts at "/$T".
			expand = func(word string) (string, error) { return word, nil }
		}
		// Docker 20.10 expands COPY and ADD --chown but takes --chmod as
		// written (a "$MODE" is then no octal mode and is ignored).
		var chmod *string
		switch cmd := cmd.(type) {
		case *instructions.CopyCommand:
			chmod = &cmd.Chmod
		case *instructions.AddCommand:
			chmod = &cmd.Chmod
		}
		var raw string
		if chmod != nil {
			raw = *chmod
		}
		err := ex.Expand(expand)
		if err != nil {
			return c.errAt(cmd.Location(), err)
		}
		if chmod != nil {
			*chmod = raw
		}
	}
	if ex, ok := cmd.(instructions.SupportsSingleWordExpansionRaw); ok {
		// Heredoc contents (unless the delimiter was quoted): variables
		// expand, quotes and escapes stay as written.
		err := ex.ExpandRaw(func(word string) (string, error) {
			lex := shell.NewLex('\\') // BuildKit's, whatever # escape= says
			lex.SkipProcessQuotes = true
			w, _, err := lex.ProcessWord(word, shell.EnvsFromSlice(s.env))
			return w, err
		})
		if err != nil {
			return c.errAt(cmd.Location(), err)
		}
	}
	var err error
	switch cmd := cmd.(type) {
	case *instructions.RunCommand:
		err = c.dispatchRun(ctx, s, cmd)
	case *instructions.CopyCommand:
		err = c.dispatchCopy(ctx, s, cmd, copyArgs{
			sources: cmd.SourcePaths, contents: cmd.SourceContents, dest: cmd.DestPath,
			from: cmd.From, chown: cmd.Chown, chmod: cmd.Chmod, excludes: cmd.ExcludePatterns,
			parents: cmd.Parents,
		})
	case *instructions.AddCommand:
		err = c.dispatchCopy(ctx, s, cmd, copyArgs{
			sources: cmd.SourcePaths, contents: cmd.SourceContents, dest: cmd.DestPath,
			chown: cmd.Chown, chmod: cmd.Chmod, excludes: cmd.ExcludePatterns, add: true,
			unpack: cmd.Unpack == nil || *cmd.Unpack,
		})
	case *instructions.WorkdirCommand:
		err = c.dispatchWorkdir(s, cmd)
	case *instructions.EnvCommand:
		for _, kv := range cmd.Env {
			s.env = setEnv(s.env, kv.Key, kv.Value)
			s.cfg.Config.Env = setEnv(s.cfg.Config.Env, kv.Key, kv.Value)
		}
		c.commit(s, "ENV "+kvString(cmd.Env), nil)
	case *instructions.ArgCommand:
		err = c.dispatchArg(s, cmd)
	case *instructions.LabelCommand:
		if s.cfg.Config.Labels == nil {
			s.cfg.Config.Labels = map[string]string{}
		}
		for _, kv := range cmd.Labels {
			s.cfg.Config.Labels[kv.Key] = kv.Value
		}
		c.commit(s, "LABEL "+kvString(cmd.Labels), nil)
	case *instructions.MaintainerCommand:
		s.cfg.Author = cmd.Maintainer
		c.commit(s, "MAINTAINER "+cmd.Maintainer, nil)
	case *instructions.UserCommand:
		s.cfg.Config.User = cmd.User
		c.commit(s, "USER "+cmd.User, nil)
	case *instructions.ExposeCommand:
		err = c.dispatchExpose(s, cmd)
	case *instructions.VolumeCommand:
		if s.cfg.Config.Volumes == nil {
			s.cfg.Config.Volumes = map[string]struct{}{}
		}
		for _, v := range cmd.Volumes {
			if v == "" {
				return c.errAt(cmd.Location(), fmt.Errorf("VOLUME specified can not be an empty string"))
			}
			s.cfg.Config.Volumes[v] = struct{}{}
		}
		c.commit(s, "VOLUME "+fmt.Sprint(cmd.Volumes), nil)
	case *instructions.StopSignalCommand:
		// Checked, but kept as written ("sigusr1" stays so), as Docker does.
		if _, err := executor.ParseSignal(cmd.Signal); err != nil {
			return c.errAt(cmd.Location(), fmt.Errorf("STOPSIGNAL: %w", err))
		}
		s.cfg.Config.StopSignal = cmd.Signal
		c.commit(s, "STOPSIGNAL "+cmd.Signal, nil)
	case *instructions.ShellCommand:
		s.cfg.Config.Shell = append([]string(nil), cmd.Shell...)
		c.commit(s, "SHELL "+fmt.Sprint(cmd.Shell), nil)
	case *instructions.CmdCommand:
		s.cfg.Config.Cmd = c.withShell(s, cmd.ShellDependantCmdLine)
		s.cmdSet = true
		c.commit(s, "CMD "+fmt.Sprintf("%q", s.cfg.Config.Cmd), nil)
	case *instructions.EntrypointCommand:
		s.cfg.Config.Entrypoint = c.withShell(s, cmd.ShellDependantCmdLine)
		if !s.cmdSet {
			s.cfg.Config.Cmd = nil
		}
		c.commit(s, "ENTRYPOINT "+fmt.Sprintf("%q", s.cfg.Config.Entrypoint), nil)
	case *instructions.HealthCheckCommand:
		h := cmd.Health
		s.cfg.Config.Healthcheck = &v1.HealthConfig{
			Test: append([]string(nil), h.Test...), Interval: h.Interval, Timeout: h.Timeout,
			StartPeriod: h.StartPeriod, Retries: h.Retries,
		}
		c.commit(s, "HEALTHCHECK "+fmt.Sprintf("%q", h.Test), nil)
	case *instructions.OnbuildCommand:
		s.cfg.Config.OnBuild = append(s.cfg.Config.OnBuild, cmd.Expression)
		c.commit(s, "ONBUILD "+cmd.Expression, nil)
	default:
		err = fmt.Errorf("instruction %s is not supported", strings.ToUpper(cmd.Name()))
	}
	if err != nil {
		return c.errAt(cmd.Location(), err)
	}
	return nil
}

// commit appends a history entry; v is the step that may add a layer.
func (c *converter) commit(s *stageState, createdBy string, v *solver.Vertex) {
	h := v1.History{Created: v1.Time{Time: c.now}, CreatedBy: createdBy, Comment: "buildkit.dockerfile.v0"}
	if v == nil {
		h.EmptyLayer = true
	}
	s.history = append(s.history, HistoryEntry{History: h, Vertex: v})
}

func kvString(kvs instructions.KeyValuePairs) string {
	parts := make([]string, len(kvs))
	for i, kv := range kvs {
		parts[i] = kv.Key + "=" + kv.Value
	}
	return strings.Join(parts, " ")
}

// shellOf returns the stage's shell for shell-form commands.
func (s *stageState) shellOf() []string {
	if len(s.cfg.Config.Shell) > 0 {
		return s.cfg.Config.Shell
	}
	return []string{"/bin/sh", "-c"}
}

// withShell turns a command line into argv: shell form is run by the shell.
func (c *converter) withShell(s *stageState, cl instructions.ShellDependantCmdLine) []string {
	if !cl.PrependShell {
		return append([]string{}, cl.CmdLine...)
	}
	script := strings.Join(cl.CmdLine, " ")
	if len(cl.Files) > 0 {
		script = heredocScript(script, cl.Files)
	}
	return append(append([]string(nil), s.shellOf()...), script)
}

// heredocScript rebuilds a shell script from a command line with heredocs.
// A command that is only a heredoc ("RUN <<EOF") runs the heredoc's body
// (without leading tabs for <<-).
func heredocScript(cmdline string, files []instructions.ShellInlineFile) string {
	if body, ok := onlyHeredoc(cmdline, files); ok {
		return body
	}
	var b strings.Builder
	b.WriteString(cmdline)
	for _, f := range files {
		b.WriteString("\n")
		b.WriteString(f.Data)
		if !strings.HasSuffix(f.Data, "\n") && f.Data != "" {
			b.WriteString("\n")
		}
		b.WriteString(f.Name)
	}
	return b.String()
}

// onlyHeredoc returns the body of a command that is a single heredoc and
// nothing else, as Docker runs it.
func onlyHeredoc(cmdline string, files []instructions.ShellInlineFile) (string, bool) {
	if len(files) != 1 || parser.MustParseHeredoc(strings.TrimSpace(cmdline)) == nil {
		return "", false
	}
	if files[0].Chomp {
		return parser.ChompHeredocContent(files[0].Data), true
	}
	return files[0].Data, true
}

// heredocPipes is where a RUN heredoc script with a #! line is mounted.
const heredocPipes = "/dev/pipes"

// vertexName names a step for progress output, numbered in its stage as
// BuildKit numbers it; a stage with no numbered steps has no numbers.
func (c *converter) vertexName(s *stageState, text string) string {
	text = strings.Join(strings.Fields(text), " ")
	if len(text) > 200 {
		text = text[:200] + "..."
	}
	if s.total == 0 {
		return text
	}
	prefix := ""
	if len(c.stages) > 1 {
		prefix = s.name
		if prefix == "" {
			prefix = fmt.Sprintf("stage-%d", s.idx)
		}
		prefix += " "
	}
	return fmt.Sprintf("[%s%d/%d] %s", prefix, s.step, s.total, text)
}

func (c *converter) dispatchRun(ctx context.Context, s *stageState, cmd *instructions.RunCommand) error {
	mounts, mountInputs, err := c.runMounts(ctx, s, cmd)
	if err != nil {
		return err
	}
	network := c.opts.Network // RUN --network is refused (see flags20)
	args := c.withShell(s, cmd.ShellDependantCmdLine)
	if body, ok := onlyHeredoc(strings.Join(cmd.CmdLine, " "), cmd.Files); ok && cmd.PrependShell && strings.HasPrefix(body, "#!") {
		// A script with its own interpreter: written to a file that runs
		// as the command, as Docker does.
		name := strings.TrimLeft(path.Clean("/"+cmd.Files[0].Name), "/")
		mountInputs = append(mountInputs, c.inlineVertex(cmd, ops.InlineFile{Path: name, Data: body, Mode: 0o755}))
		mounts = append(mounts, ops.RunMount{Type: "bind", Target: heredocPipes, ReadOnly: true, Input: len(mountInputs), Source: "/"})
		args = append(append([]string(nil), s.shellOf()...), path.Join(heredocPipes, name))
	}
	if len(args) == 0 || (len(args) == 1 && args[0] == "") {
		return fmt.Errorf("RUN needs a command")
	}
	env := append([]string(nil), s.env...)
	wd := s.cfg.Config.WorkingDir
	if wd == "" {
		wd = "/"
	}
	op := &ops.Run{Args: args, Env: env, Cwd: wd, User: s.cfg.Config.User, Network: network, Mounts: mounts, Proxy: c.proxy,
		ExtraHosts: c.opts.ExtraHosts}
	v := &solver.Vertex{
		Name:     c.vertexName(s, "RUN "+strings.Join(cmd.CmdLine, " ")),
		Op:       op,
		Inputs:   append([]*solver.Vertex{s.vertex}, mountInputs...),
		Location: c.location(cmd.Location()),
	}
	s.vertex = v
	createdBy := "RUN " + strings.Join(args, " ")
	if cmd.PrependShell {
		createdBy = "RUN " + strings.Join(s.shellOf(), " ") + " " + strings.Join(cmd.CmdLine, " ")
	}
	c.commit(s, createdBy+" # buildkit", v)
	return nil
}

// proxyEnv returns the proxy variables of RUN steps, as Docker 20.10's
// builder sets them: a build arg named http_proxy, https_proxy, ftp_proxy
// or no_proxy in any case, with a value, sets the variable in both upper
// and lower case, over what ENV and ARG set, whether or not an ARG
// declares it.
func proxyEnv(buildArgs map[string]string) []string {
	names := make([]string, 0, len(buildArgs))
	for k := range buildArgs {
		names = append(names, k)
	}
	sort.Strings(names)
	var out []string
	for _, p := range []string{"http_proxy", "https_proxy", "ftp_proxy", "no_proxy"} {
		val := ""
		for _, k := range names {
			if v := buildArgs[k]; strings.EqualFold(k, p) && v != "" {
				val = v
			}
		}
		if val != "" {
			out = append(out, strings.ToUpper(p)+"="+val, p+"="+val)
		}
	}
	return out
}

func (c *converter) dispatchWorkdir(s *stageState, cmd *instructions.WorkdirCommand) error {
	// As Docker 20.10's builder: an absolute path is recorded as written
	// ("/x/y/", "/a/../b"), a relative one joined to the current one and
	// cleaned; the directory made is the cleaned path.
	wd := cmd.Path
	if !path.IsAbs(wd) {
		wd = path.Join("/", s.cfg.Config.WorkingDir, wd)
	}
	s.cfg.Config.WorkingDir = wd
	wd = path.Clean(wd)
	if wd == "/" {
		c.commit(s, "WORKDIR "+wd, nil)
		return nil
	}
	v := &solver.Vertex{
		Name:     c.vertexName(s, "WORKDIR "+wd),
		Op:       &ops.File{Action: fileop.Action{Mkdir: &fileop.Mkdir{Path: wd, Mode: 0o755, Chown: s.cfg.Config.User}}},
		Inputs:   []*solver.Vertex{s.vertex},
		Location: c.location(cmd.Location()),
	}
	s.vertex = v
	c.commit(s, "WORKDIR "+wd, v)
	return nil
}

func (c *converter) dispatchArg(s *stageState, cmd *instructions.ArgCommand) error {
	pre := predefinedArgs()
	for _, kv := range cmd.Args {
		var val *string
		if kv.Value != nil {
			v := *kv.Value
			val = &v
		}
		if bv, ok := c.opts.BuildArgs[kv.Key]; ok {
			val = &bv
		}
		if val == nil {
			if v, ok := getEnv(c.metaEnv, kv.Key); ok {
				val = &v
			} else if v, ok := pre[kv.Key]; ok {
				val = &v
			}
		}
		if val != nil {
			s.env = setEnv(s.env, kv.Key, *val)
		}
	}
	c.commit(s, "ARG "+argString(cmd.Args), nil)
	return nil
}

func argString(args []instructions.KeyValuePairOptional) string {
	parts := make([]string, len(args))
	for i, a := range args {
		parts[i] = a.Key
		if a.Value != nil {
			parts[i] += "=" + *a.Value
		}
	}
	return strings.Join(parts, " ")
}

func (c *converter) dispatchExpose(s *stageState, cmd *instructions.ExposeCommand) error {
	var ports []string
	for _, p := range cmd.Ports {
		ws, err := c.expandWords(p, s.env)
		if err != nil {
			return err
		}
		ports = append(ports, ws...)
	}
	if s.cfg.Config.ExposedPorts == nil {
		s.cfg.Config.ExposedPorts = map[string]struct{}{}
	}
	var keys []string
	for _, p := range ports {
		ks, err := parsePort(p)
		if err != nil {
			return err
		}
		for _, k := range ks {
			s.cfg.Config.ExposedPorts[k] = struct{}{}
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	c.commit(s, "EXPOSE "+strings.Join(keys, " "), nil)
	return nil
}

// parsePort turns "80", "80/udp", "8000-8002/tcp" or "127.0.0.1:80:80" into
// "port/proto" keys.
func parsePort(spec string) ([]string, error) {
	proto := "tcp"
	if p, pr, ok := strings.Cut(spec, "/"); ok {
		spec, proto = p, strings.ToLower(pr)
	}
	if i := strings.LastIndex(spec, ":"); i >= 0 {
		spec = spec[i+1:]
	}
	switch proto {
	case "tcp", "udp", "sctp":
	default:
		return nil, fmt.Errorf("invalid protocol %q in EXPOSE", proto)
	}
	// Digits only, as Docker reads ports (ParseUint: "+80" is no port).
	lo, hi, isRange := strings.Cut(spec, "-")
	start, err := strconv.ParseUint(lo, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("invalid port %q in EXPOSE", spec)
	}
	end := start
	if isRange {
		end, err = strconv.ParseUint(hi, 10, 16)
		if err != nil || end < start {
			return nil, fmt.Errorf("invalid port range %q in EXPOSE", spec)
		}
	}
	var out []string
	for p := start; p <= end; p++ {
		out = append(out, fmt.Sprintf("%d/%s", p, proto))
	}
	return out, nil
}
