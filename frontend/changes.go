package frontend

import (
	"context"
	"fmt"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// ApplyChanges applies Dockerfile config instructions (docker import
// --change / commit --change: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD,
// STOPSIGNAL, USER, VOLUME, WORKDIR) to cfg and returns the result.
func ApplyChanges(ctx context.Context, cfg v1.ConfigFile, changes []string) (v1.ConfigFile, error) {
	c := &converter{opts: Options{Filename: "--change"}, escape: '\\'}
	s := &stageState{cfg: cloneConfig(cfg), env: append([]string(nil), cfg.Config.Env...)}
	for _, ch := range changes {
		res, err := parser.Parse(strings.NewReader(ch))
		if err != nil {
			return cfg, fmt.Errorf("--change %q: %w", ch, cleanErr(err))
		}
		for _, n := range res.AST.Children {
			switch strings.ToLower(n.Value) {
			case "cmd", "entrypoint", "env", "expose", "label", "onbuild", "stopsignal", "user", "volume", "workdir":
			default:
				return cfg, fmt.Errorf("--change %q: %s is not a config instruction", ch, strings.ToUpper(n.Value))
			}
			cmd, err := instructions.ParseCommand(n)
			if err != nil {
				return cfg, fmt.Errorf("--change %q: %w", ch, cleanErr(err))
			}
			if wd, ok := cmd.(*instructions.WorkdirCommand); ok {
				p := wd.Path
				if !strings.HasPrefix(p, "/") {
					p = strings.TrimSuffix(s.cfg.Config.WorkingDir, "/") + "/" + p
				}
				s.cfg.Config.WorkingDir = p
				continue
			}
			if err := c.dispatch(ctx, s, cmd); err != nil {
				return cfg, fmt.Errorf("--change %q: %w", ch, err)
			}
		}
	}
	return s.cfg, nil
}
