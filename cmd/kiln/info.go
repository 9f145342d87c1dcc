package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"runtime"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/kiln-build/kiln/cmd/internal/app"
	"github.com/kiln-build/kiln/executor/containers"
)

// systemInfo is what kiln info shows, under docker info's field names so
// that --format templates written for docker read it.
type systemInfo struct {
	Containers, ContainersRunning, ContainersPaused, ContainersStopped, Images int
	Driver, DockerRootDir, CgroupDriver, CgroupVersion                         string
	KernelVersion, OperatingSystem, OSType, Architecture, Name, ServerVersion  string
	NCPU                                                                       int
	MemTotal                                                                   int64
	SecurityOptions                                                            []string
}

func (c *cli) infoCommand() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "info [OPTIONS]",
		Short: "Show system-wide information",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.withApp(cmd, func(ctx context.Context, a *app.App) error {
				info, err := gatherInfo(ctx, a)
				if err != nil {
					return err
				}
				if format != "" {
					return c.writeFormatted(format, nil, []any{info})
				}
				w := c.stdout
				fmt.Fprintf(w, "Server:\n Containers: %d\n  Running: %d\n  Paused: %d\n  Stopped: %d\n Images: %d\n",
					info.Containers, info.ContainersRunning, info.ContainersPaused, info.ContainersStopped, info.Images)
				fmt.Fprintf(w, " Server Version: %s\n Storage Driver: %s\n Cgroup Driver: %s\n Cgroup Version: %s\n",
					info.ServerVersion, info.Driver, info.CgroupDriver, info.CgroupVersion)
				fmt.Fprintf(w, " Security Options:\n  %s\n", strings.Join(info.SecurityOptions, "\n  "))
				fmt.Fprintf(w, " Kernel Version: %s\n Operating System: %s\n OSType: %s\n Architecture: %s\n CPUs: %d\n Total Memory: %s\n Name: %s\n Kiln Root Dir: %s\n",
					info.KernelVersion, info.OperatingSystem, info.OSType, info.Architecture, info.NCPU, humanSize(info.MemTotal), info.Name, info.DockerRootDir)
				return nil
			})
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "Go template over the information, as docker's (e.g. '{{.CgroupVersion}}')")
	return cmd
}

// gatherInfo collects kiln info's figures.
func gatherInfo(ctx context.Context, a *app.App) (systemInfo, error) {
	info := systemInfo{Driver: "overlayfs", DockerRootDir: a.Store.Root(), CgroupDriver: "cgroupfs", CgroupVersion: "1",
		OSType: runtime.GOOS, NCPU: runtime.NumCPU(), ServerVersion: strings.TrimPrefix(versionLine(), "kiln version "), SecurityOptions: []string{"name=seccomp,profile=default"}}
	list, err := a.ContainerList(ctx)
	if err != nil {
		return info, err
	}
	for _, r := range list {
		info.Containers++
		switch r.State.Status {
		case containers.Running, containers.Restarting:
			info.ContainersRunning++
		case containers.Paused:
			info.ContainersPaused++
		default:
			info.ContainersStopped++
		}
	}
	names, err := a.Store.Images(ctx)
	if err != nil {
		return info, err
	}
	info.Images = len(names)
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		info.CgroupVersion = "2"
	}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		info.KernelVersion = unix.ByteSliceToString(u.Release[:])
		info.Architecture = unix.ByteSliceToString(u.Machine[:])
		info.Name = unix.ByteSliceToString(u.Nodename[:])
	}
	info.MemTotal = int64(containers.HostMemory())
	info.OperatingSystem = osRelease()
	return info, nil
}

// osRelease is the host's PRETTY_NAME from /etc/os-release.
func osRelease() string {
	f, err := os.Open("/etc/os-release")
	if err != nil {
		return runtime.GOOS
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "PRETTY_NAME="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return runtime.GOOS
}
