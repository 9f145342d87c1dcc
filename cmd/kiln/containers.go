package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/kiln-build/kiln/cmd/internal/shim"
	"github.com/kiln-build/kiln/executor"
	"github.com/kiln-build/kiln/executor/containers"
)

// containerStore opens the container records under the store root; most
// container commands need nothing else.
func (c *cli) containerStore(ctx context.Context) (*containers.Store, error) {
	a, err := c.open(ctx)
	if err != nil {
		return nil, err
	}
	defer a.Close()
	return a.Containers()
}

// container opens the container store and finds the container ref.
func (c *cli) container(ctx context.Context, ref string) (*containers.Store, *containers.Record, error) {
	cs, err := c.containerStore(ctx)
	if err != nil {
		return nil, nil, err
	}
	r, err := cs.Get(ctx, ref)
	if err != nil {
		return nil, nil, err
	}
	return cs, r, nil
}

// eachContainer runs fn for every argument, printing each name that
// succeeded and every error; the error returned says how many failed.
func (c *cli) eachContainer(ctx context.Context, args []string, echo bool, fn func(cs *containers.Store, ref string) error) error {
	cs, err := c.containerStore(ctx)
	if err != nil {
		return asKilnError(err)
	}
	var failed []error
	for _, ref := range args {
		if err := fn(cs, ref); err != nil {
			failed = append(failed, err)
			continue
		}
		if echo {
			fmt.Fprintln(c.stdout, ref)
		}
	}
	switch len(failed) {
	case 0:
		return nil
	case 1:
		return asKilnError(failed[0])
	}
	for _, e := range failed[:len(failed)-1] {
		fmt.Fprintln(c.stderr, "ERROR: "+e.Error())
	}
	return asKilnError(failed[len(failed)-1])
}

func (c *cli) startCommand() *cobra.Command {
	var attach, interactive bool
	var flagKeys string
	cmd := &cobra.Command{
		Use:   "start [OPTIONS] CONTAINER [CONTAINER...]",
		Short: "Start one or more stopped containers",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if !attach && !interactive {
				return c.eachContainer(ctx, args, true, func(cs *containers.Store, ref string) error {
					r, err := cs.Get(ctx, ref)
					if err != nil {
						return err
					}
					if r.Running() {
						return nil
					}
					_, err = cs.Start(ctx, r.Config.ID, containers.StartOptions{Exe: shim.Exe()})
					return err
				})
			}
			if len(args) > 1 {
				return asKilnError(errors.New("start -a/-i takes one container"))
			}
			cs, r, err := c.container(ctx, args[0])
			if err != nil {
				return asKilnError(err)
			}
			stdin := interactive && r.Config.OpenStdin
			keys, err := detachKeys(flagKeys, stdin && r.Config.Tty)
			if err != nil {
				return asKilnError(err)
			}
			sess, err := cs.Start(ctx, r.Config.ID, containers.StartOptions{Attach: true, Stdin: stdin, Exe: shim.Exe()})
			if err != nil {
				return startErr(err)
			}
			return c.streamExit(ctx, sess, r.Config.Tty, stdin, true, keys, true)
		},
	}
	cmd.Flags().BoolVarP(&attach, "attach", "a", false, "attach to the output and exit with the container's status")
	cmd.Flags().BoolVarP(&interactive, "interactive", "i", false, "attach stdin")
	addDetachKeysFlag(cmd, &flagKeys)
	return cmd
}

func (c *cli) stopCommand() *cobra.Command {
	var timeout int
	cmd := &cobra.Command{
		Use:   "stop [OPTIONS] CONTAINER [CONTAINER...]",
		Short: "Stop one or more running containers",
		Long:  "stop sends the container's stop signal (SIGTERM unless set), then SIGKILL after the timeout.",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			d := time.Duration(-1)
			if cmd.Flags().Changed("time") {
				d = time.Duration(timeout) * time.Second
			}
			return c.eachContainer(ctx, args, true, func(cs *containers.Store, ref string) error {
				return cs.Stop(ctx, ref, d)
			})
		},
	}
	cmd.Flags().IntVarP(&timeout, "time", "t", 10, "seconds to wait before killing the container")
	return cmd
}

func (c *cli) restartCommand() *cobra.Command {
	var timeout int
	cmd := &cobra.Command{
		Use:   "restart [OPTIONS] CONTAINER [CONTAINER...]",
		Short: "Restart one or more containers",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			d := time.Duration(-1)
			if cmd.Flags().Changed("time") {
				d = time.Duration(timeout) * time.Second
			}
			return c.eachContainer(ctx, args, true, func(cs *containers.Store, ref string) error {
				r, err := cs.Get(ctx, ref)
				if err != nil {
					return err
				}
				if err := cs.Stop(ctx, r.Config.ID, d); err != nil {
					return err
				}
				_, err = cs.Start(ctx, r.Config.ID, containers.StartOptions{Exe: shim.Exe()})
				return err
			})
		},
	}
	cmd.Flags().IntVarP(&timeout, "time", "t", 10, "seconds to wait before killing the container")
	return cmd
}

func (c *cli) killCommand() *cobra.Command {
	var sig string
	cmd := &cobra.Command{
		Use:   "kill [OPTIONS] CONTAINER [CONTAINER...]",
		Short: "Send a signal (default SIGKILL) to one or more running containers",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			s, err := executor.ParseSignal(sig)
			if err != nil {
				return asKilnError(err)
			}
			return c.eachContainer(ctx, args, true, func(cs *containers.Store, ref string) error {
				return cs.Kill(ctx, ref, s)
			})
		},
	}
	cmd.Flags().StringVarP(&sig, "signal", "s", "KILL", "signal to send")
	return cmd
}

func (c *cli) rmCommand() *cobra.Command {
	var force, volumes bool
	cmd := &cobra.Command{
		Use:     "rm [OPTIONS] CONTAINER [CONTAINER...]",
		Aliases: []string{"container-rm"},
		Short:   "Remove one or more containers",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			a, err := c.open(ctx)
			if err != nil {
				return asKilnError(err)
			}
			defer a.Close()
			return c.eachContainer(ctx, args, true, func(cs *containers.Store, ref string) error {
				return a.RemoveContainer(ctx, ref, force, volumes)
			})
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "kill and remove a running container")
	cmd.Flags().BoolVarP(&volumes, "volumes", "v", false, "remove the container's anonymous volumes")
	return cmd
}

func (c *cli) pauseCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "pause CONTAINER [CONTAINER...]",
		Short: "Freeze all processes of one or more containers",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			return c.eachContainer(ctx, args, true, func(cs *containers.Store, ref string) error { return cs.Pause(ctx, ref) })
		},
	}
}

func (c *cli) unpauseCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "unpause CONTAINER [CONTAINER...]",
		Short: "Thaw the processes of one or more paused containers",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			return c.eachContainer(ctx, args, true, func(cs *containers.Store, ref string) error { return cs.Unpause(ctx, ref) })
		},
	}
}

func (c *cli) waitCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "wait CONTAINER [CONTAINER...]",
		Short: "Wait for containers to stop and print their exit codes",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			return c.eachContainer(ctx, args, false, func(cs *containers.Store, ref string) error {
				code, err := cs.Wait(ctx, ref)
				if err != nil {
					return err
				}
				fmt.Fprintln(c.stdout, code)
				return nil
			})
		},
	}
}

func (c *cli) renameCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "rename CONTAINER NEW_NAME",
		Short: "Rename a container",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			cs, err := c.containerStore(ctx)
			if err != nil {
				return asKilnError(err)
			}
			return asKilnError(cs.Rename(ctx, args[0], args[1]))
		},
	}
}

// containerRow is a container as docker ps --format sees it.
type containerRow struct {
	ID, Image, Command, CreatedAt, RunningFor, Ports, Status, Names, Labels, Mounts, Networks, State string
}

// containerHeaders are docker's table headers of containerRow's fields.
func containerHeaders() map[string]string {
	return map[string]string{"ID": "CONTAINER ID", "CreatedAt": "CREATED AT", "RunningFor": "CREATED"}
}

func (c *cli) psCommand() *cobra.Command {
	var all, quiet, noTrunc bool
	var format string
	var filters []string
	cmd := &cobra.Command{
		Use:     "ps [OPTIONS]",
		Aliases: []string{"container-ls"},
		Short:   "List containers",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			match, err := psFilter(filters)
			if err != nil {
				return asKilnError(err)
			}
			cs, err := c.containerStore(ctx)
			if err != nil {
				return asKilnError(err)
			}
			list, err := cs.List(ctx)
			if err != nil {
				return asKilnError(err)
			}
			var tw *tabwriter.Writer
			if !quiet && format == "" {
				tw = tabwriter.NewWriter(c.stdout, 0, 8, 3, ' ', 0)
				fmt.Fprintln(tw, "CONTAINER ID\tIMAGE\tCOMMAND\tCREATED\tSTATUS\tPORTS\tNAMES")
			}
			var rows []any
			now := time.Now()
			for _, r := range list {
				if !all && !r.Running() && len(filters) == 0 {
					continue
				}
				if !match(r) {
					continue
				}
				id := containers.ShortID(r.Config.ID)
				if noTrunc {
					id = r.Config.ID
				}
				if quiet {
					fmt.Fprintln(c.stdout, id)
					continue
				}
				command := strconv.Quote(strings.Join(r.Config.Args, " "))
				if !noTrunc && len(command) > 22 {
					command = command[:19] + "…\""
				}
				if format != "" {
					rows = append(rows, psRow(r, id, command, now))
					continue
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s ago\t%s\t%s\t%s\n", id, r.Config.Image, command,
					humanDuration(now.Sub(r.Config.Created)), statusString(r, now), portsString(r), r.Config.Name)
			}
			if format != "" && !quiet {
				return c.writeFormatted(format, containerHeaders(), rows)
			}
			if tw != nil {
				return tw.Flush()
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&format, "format", "", "Go template over each container, as docker's (e.g. '{{.Names}} {{.Status}}'; table, json)")
	cmd.Flags().BoolVarP(&all, "all", "a", false, "show all containers (default shows running ones)")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "only show IDs")
	cmd.Flags().BoolVar(&noTrunc, "no-trunc", false, "do not truncate output")
	cmd.Flags().StringArrayVarP(&filters, "filter", "f", nil, "filter: status=, name=, id=, label=, ancestor=")
	return cmd
}

// psFilter turns --filter values into a predicate. Values of one key are
// alternatives; different keys must all match.
func psFilter(filters []string) (func(*containers.Record) bool, error) {
	byKey := map[string][]string{}
	for _, f := range filters {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return nil, fmt.Errorf("--filter %q: want KEY=VALUE", f)
		}
		switch k {
		case "status", "name", "id", "label", "ancestor":
		default:
			return nil, fmt.Errorf("--filter %q: unknown key %q (want status, name, id, label or ancestor)", f, k)
		}
		if k == "status" {
			switch containers.Status(v) {
			case containers.Created, containers.Running, containers.Paused, containers.Restarting, containers.Exited, containers.Dead, "removing":
			default:
				return nil, fmt.Errorf("--filter %q: invalid status (want created, restarting, running, removing, paused, exited or dead)", f)
			}
		}
		byKey[k] = append(byKey[k], v)
	}
	return func(r *containers.Record) bool {
		for k, vals := range byKey {
			ok := false
			for _, v := range vals {
				switch k {
				case "status":
					ok = ok || string(r.State.Status) == v
				case "name":
					ok = ok || strings.Contains(r.Config.Name, strings.TrimPrefix(v, "/"))
				case "id":
					ok = ok || strings.HasPrefix(r.Config.ID, v)
				case "label":
					lk, lv, hasV := strings.Cut(v, "=")
					got, has := r.Config.Labels[lk]
					ok = ok || has && (!hasV || got == lv)
				case "ancestor":
					ok = ok || r.Config.Image == v || strings.HasPrefix(strings.TrimPrefix(r.Config.ImageID, "sha256:"), strings.TrimPrefix(v, "sha256:"))
				}
			}
			if !ok {
				return false
			}
		}
		return true
	}, nil
}

// statusString is docker's STATUS column.
func statusString(r *containers.Record, now time.Time) string {
	st := r.State
	switch st.Status {
	case containers.Created:
		return "Created"
	case containers.Running, containers.Paused:
		s := "Up " + humanDuration(now.Sub(st.StartedAt))
		if st.Status == containers.Paused {
			s += " (Paused)"
		} else if st.Health != nil {
			s += " (" + healthWord(st.Health.Status) + ")"
		}
		return s
	case containers.Restarting:
		return fmt.Sprintf("Restarting (%d) %s ago", st.ExitCode, humanDuration(now.Sub(st.FinishedAt)))
	case containers.Dead:
		return "Dead"
	}
	return fmt.Sprintf("Exited (%d) %s ago", st.ExitCode, humanDuration(now.Sub(st.FinishedAt)))
}

func healthWord(s string) string {
	if s == "starting" {
		return "health: starting"
	}
	return s
}

// portsString is docker's PORTS column.
func portsString(r *containers.Record) string {
	var out []string
	ports := r.State.Ports
	if len(ports) == 0 && r.Running() {
		ports = r.Config.Ports
	}
	if r.Running() {
		for _, p := range ports {
			ip := p.HostIP
			if ip == "" {
				ip = "0.0.0.0"
			}
			out = append(out, fmt.Sprintf("%s:%d->%d/%s", ip, p.HostPort, p.ContainerPort, protoOf(p)))
		}
	}
	if len(out) == 0 {
		out = append(out, r.Config.ExposedPorts...)
	}
	return strings.Join(out, ", ")
}

func protoOf(p containers.Port) string {
	if p.Proto == "" {
		return "tcp"
	}
	return p.Proto
}

// humanDuration is docker's "About a minute", "3 hours" style.
func humanDuration(d time.Duration) string {
	s := int(d.Seconds())
	switch {
	case s < 1:
		return "Less than a second"
	case s == 1:
		return "1 second"
	case s < 60:
		return fmt.Sprintf("%d seconds", s)
	case d.Minutes() < 2:
		return "About a minute"
	case d.Minutes() < 60:
		return fmt.Sprintf("%d minutes", int(d.Minutes()))
	case d.Hours() < 2:
		return "About an hour"
	case d.Hours() < 48:
		return fmt.Sprintf("%d hours", int(d.Hours()))
	case d.Hours() < 24*14:
		return fmt.Sprintf("%d days", int(d.Hours()/24))
	}
	return fmt.Sprintf("%d weeks", int(d.Hours()/24/7))
}

func (c *cli) logsCommand() *cobra.Command {
	var follow, timestamps bool
	var tail string
	cmd := &cobra.Command{
		Use:   "logs [OPTIONS] CONTAINER",
		Short: "Show a container's output",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			n := -1
			if tail != "" && tail != "all" {
				var err error
				if n, err = strconv.Atoi(tail); err != nil || n < 0 {
					return asKilnError(fmt.Errorf("--tail %q: want a number or all", tail))
				}
			}
			cs, r, err := c.container(ctx, args[0])
			if err != nil {
				return asKilnError(err)
			}
			opts := containers.LogOptions{Tail: n, Follow: follow, MaxFiles: r.Config.LogMaxFiles, Done: func() bool {
				r2, err := cs.Get(ctx, r.Config.ID)
				return err != nil || !r2.Running()
			}}
			err = containers.ReadLog(ctx, r.LogPath(), opts, func(e containers.LogEntry) error {
				var w io.Writer = c.stdout
				if e.Stream == "stderr" {
					w = c.stderr
				}
				if timestamps {
					_, err := fmt.Fprintf(w, "%s %s", e.Time.Format(time.RFC3339Nano), e.Log)
					return err
				}
				_, err := io.WriteString(w, e.Log)
				return err
			})
			if errors.Is(err, context.Canceled) {
				return nil
			}
			return asKilnError(err)
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "follow new output")
	cmd.Flags().BoolVarP(&timestamps, "timestamps", "t", false, "show timestamps")
	cmd.Flags().StringVarP(&tail, "tail", "n", "all", "number of lines to show from the end")
	return cmd
}

func (c *cli) execCommand() *cobra.Command {
	var interactive, tty, detach bool
	var user, workdir, flagKeys string
	var env []string
	cmd := &cobra.Command{
		Use:   "exec [OPTIONS] CONTAINER COMMAND [ARG...]",
		Short: "Run a command in a running container",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if tty && interactive && !isTerminal(c.stdin) {
				return asKilnError(errors.New("the input device is not a TTY; drop -t or run from a terminal"))
			}
			keys, err := detachKeys(flagKeys, tty && interactive)
			if err != nil {
				return asKilnError(err)
			}
			cs, err := c.containerStore(ctx)
			if err != nil {
				return asKilnError(err)
			}
			for i, e := range env {
				if !strings.Contains(e, "=") {
					env[i] = e + "=" + os.Getenv(e)
				}
			}
			ec := containers.ExecConfig{Args: args[1:], Env: env, Cwd: workdir, User: user, Tty: tty, Stdin: interactive && !detach, Detach: detach}
			sess, err := cs.Exec(ctx, args[0], ec)
			if err != nil {
				return asKilnError(err)
			}
			if detach {
				sess.Close()
				return nil
			}
			code, err := c.stream(ctx, sess, tty, interactive, true, keys)
			if errors.Is(err, containers.ErrDetached) {
				return err // exit 1, as docker exec
			}
			var se *containers.StartError
			if errors.As(err, &se) {
				// A command that cannot be started: 126, as docker exec
				// (20.10) exits for it, whatever the reason.
				return &exitCodeErr{code: 126, err: err}
			}
			if err != nil {
				return asKilnError(err)
			}
			return exitWith(code)
		},
	}
	fl := cmd.Flags()
	fl.SetInterspersed(false)
	fl.BoolVarP(&interactive, "interactive", "i", false, "keep stdin open")
	fl.BoolVarP(&tty, "tty", "t", false, "allocate a pseudo terminal")
	fl.BoolVarP(&detach, "detach", "d", false, "run the command in the background")
	fl.StringVarP(&user, "user", "u", "", "user name or uid[:gid]")
	fl.StringVarP(&workdir, "workdir", "w", "", "working directory inside the container")
	fl.StringArrayVarP(&env, "env", "e", nil, "set an environment variable")
	addDetachKeysFlag(cmd, &flagKeys)
	return cmd
}

func (c *cli) portCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "port CONTAINER [PRIVATE_PORT[/PROTO]]",
		Short: "List a container's published ports",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			_, r, err := c.container(ctx, args[0])
			if err != nil {
				return asKilnError(err)
			}
			ports := r.State.Ports
			if len(ports) == 0 {
				ports = r.Config.Ports
			}
			var lines []string
			for _, p := range ports {
				key := fmt.Sprintf("%d/%s", p.ContainerPort, protoOf(p))
				if len(args) == 2 {
					want := args[1]
					if !strings.Contains(want, "/") {
						want += "/tcp"
					}
					if want != key {
						continue
					}
				}
				ip := p.HostIP
				if ip == "" {
					ip = "0.0.0.0"
				}
				if len(args) == 2 {
					lines = append(lines, fmt.Sprintf("%s:%d", ip, p.HostPort))
				} else {
					lines = append(lines, fmt.Sprintf("%s -> %s:%d", key, ip, p.HostPort))
				}
			}
			if len(args) == 2 && len(lines) == 0 {
				return asKilnError(fmt.Errorf("no public port '%s' published for %s", args[1], r.Config.Name))
			}
			sort.Strings(lines)
			for _, l := range lines {
				fmt.Fprintln(c.stdout, l)
			}
			return nil
		},
	}
}

func (c *cli) topCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "top CONTAINER",
		Short: "Show the processes of a running container",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			_, r, err := c.container(ctx, args[0])
			if err != nil {
				return asKilnError(err)
			}
			if !r.Running() || r.State.Pid == 0 {
				return asKilnError(fmt.Errorf("container %s is not running", r.Config.Name))
			}
			procs, err := containers.Processes(r.State.Pid)
			if err != nil {
				return asKilnError(err)
			}
			tw := tabwriter.NewWriter(c.stdout, 0, 8, 3, ' ', 0)
			fmt.Fprintln(tw, "UID\tPID\tPPID\tSTIME\tCMD")
			for _, p := range procs {
				fmt.Fprintf(tw, "%d\t%d\t%d\t%s\t%s\n", p.UID, p.Pid, p.PPid, p.Started.Format("15:04"), p.Cmd)
			}
			return tw.Flush()
		},
	}
}

// psRow is r as a docker ps --format row; id and command as ps shows them.
func psRow(r *containers.Record, id, command string, now time.Time) containerRow {
	row := containerRow{ID: id, Image: r.Config.Image, Command: command, CreatedAt: r.Config.Created.Format("2006-01-02 15:04:05 -0700 MST"),
		RunningFor: humanDuration(now.Sub(r.Config.Created)) + " ago", Ports: portsString(r), Status: statusString(r, now),
		Names: r.Config.Name, Networks: r.Config.Network, State: string(r.State.Status)}
	keys := make([]string, 0, len(r.Config.Labels))
	for k := range r.Config.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		keys[i] = k + "=" + r.Config.Labels[k]
	}
	row.Labels = strings.Join(keys, ",")
	var mounts []string
	for _, m := range r.Config.Mounts {
		mounts = append(mounts, m.Target)
	}
	row.Mounts = strings.Join(mounts, ",")
	return row
}
