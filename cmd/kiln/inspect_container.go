package main

import (
	"fmt"
	"strconv"
	"time"

	"github.com/kiln-build/kiln/executor/containers"
)

// containerJSON is a container as kiln inspect shows it, close to docker's.
func containerJSON(r *containers.Record) map[string]any {
	c, st := r.Config, r.State
	path, args := "", []string{}
	if len(c.Args) > 0 {
		path, args = c.Args[0], c.Args[1:]
	}
	portBindings := map[string][]map[string]string{}
	for _, p := range c.Ports {
		key := fmt.Sprintf("%d/%s", p.ContainerPort, protoOf(p))
		portBindings[key] = append(portBindings[key], map[string]string{"HostIp": p.HostIP, "HostPort": portString(p.HostPort)})
	}
	ports := map[string]any{}
	for _, e := range c.ExposedPorts {
		ports[e] = nil
	}
	for _, p := range st.Ports {
		key := fmt.Sprintf("%d/%s", p.ContainerPort, protoOf(p))
		ip := p.HostIP
		if ip == "" {
			ip = "0.0.0.0"
		}
		list, _ := ports[key].([]map[string]string)
		ports[key] = append(list, map[string]string{"HostIp": ip, "HostPort": portString(p.HostPort)})
	}
	exposed := map[string]struct{}{}
	for _, e := range c.ExposedPorts {
		exposed[e] = struct{}{}
	}
	var binds, tmpfs = []string{}, map[string]string{}
	mounts := []map[string]any{}
	for _, m := range c.Mounts {
		mode := "rw"
		if m.ReadOnly {
			mode = "ro"
		}
		mj := map[string]any{"Type": m.Type, "Source": m.Source, "Destination": m.Target, "Mode": mode, "RW": !m.ReadOnly}
		switch m.Type {
		case containers.MountBind:
			binds = append(binds, m.Source+":"+m.Target+optRO(m.ReadOnly))
		case containers.MountVolume:
			mj["Name"], mj["Driver"] = m.Name, "local"
			if !m.Anonymous {
				binds = append(binds, m.Name+":"+m.Target+optRO(m.ReadOnly))
			}
		case containers.MountTmpfs:
			tmpfs[m.Target] = joinOpts(m.Options)
			continue
		}
		mounts = append(mounts, mj)
	}
	state := map[string]any{
		"Status": st.Status, "Running": st.Status == containers.Running || st.Status == containers.Paused,
		"Paused": st.Status == containers.Paused, "Restarting": st.Status == containers.Restarting,
		"OOMKilled": false, "Dead": st.Status == containers.Dead, "Pid": st.Pid, "ExitCode": st.ExitCode,
		"Error": st.Error, "StartedAt": timeString(st.StartedAt), "FinishedAt": timeString(st.FinishedAt),
	}
	if st.Health != nil {
		state["Health"] = st.Health
	}
	var health any
	if c.Healthcheck != nil {
		health = map[string]any{"Test": c.Healthcheck.Test, "Interval": c.Healthcheck.Interval, "Timeout": c.Healthcheck.Timeout,
			"StartPeriod": c.Healthcheck.StartPeriod, "Retries": c.Healthcheck.Retries}
	}
	netName := c.Network
	networks := map[string]any{netName: map[string]any{"IPAddress": st.IPAddress, "Gateway": st.Gateway}}
	lower := ""
	for i := len(c.LowerDirs) - 1; i >= 0; i-- {
		if lower != "" {
			lower += ":"
		}
		lower += c.LowerDirs[i]
	}
	return map[string]any{
		"Id":           c.ID,
		"Created":      c.Created.Format(time.RFC3339Nano),
		"Path":         path,
		"Args":         args,
		"State":        state,
		"Image":        c.ImageID,
		"LogPath":      r.LogPath(),
		"Name":         "/" + c.Name,
		"RestartCount": st.RestartCount,
		"Driver":       "overlay2",
		"Platform":     "linux",
		"HostConfig": map[string]any{
			"Binds": binds, "NetworkMode": c.Network, "PortBindings": portBindings,
			"RestartPolicy": c.Restart, "AutoRemove": c.AutoRemove, "ReadonlyRootfs": c.ReadOnly,
			"Memory": c.Resources.Memory, "NanoCpus": int64(c.Resources.CPUs * 1e9), "PidsLimit": c.Resources.PidsLimit,
			"CapAdd": c.CapAdd, "CapDrop": c.CapDrop, "SecurityOpt": c.SecurityOpt, "ExtraHosts": c.ExtraHosts, "Init": c.Init, "Tmpfs": tmpfs,
			"LogConfig": map[string]any{"Type": "json-file", "Config": map[string]string{}},
		},
		"GraphDriver": map[string]any{"Name": "overlay2", "Data": map[string]string{
			"LowerDir": lower, "UpperDir": r.UpperDir(), "WorkDir": r.WorkDir()}},
		"Mounts": mounts,
		"Config": map[string]any{
			"Hostname": c.Hostname, "User": c.User, "Tty": c.Tty, "OpenStdin": c.OpenStdin, "StdinOnce": c.StdinOnce,
			"Env": c.Env, "Cmd": c.Cmd, "Entrypoint": c.Entrypoint, "Image": c.Image, "WorkingDir": c.WorkingDir,
			"Labels": c.Labels, "StopSignal": c.StopSignal, "ExposedPorts": exposed, "Healthcheck": health,
		},
		"NetworkSettings": map[string]any{
			"IPAddress": st.IPAddress, "Gateway": st.Gateway, "Ports": ports, "Networks": networks,
		},
	}
}

func portString(p uint16) string {
	if p == 0 {
		return ""
	}
	return strconv.Itoa(int(p))
}

func optRO(ro bool) string {
	if ro {
		return ":ro"
	}
	return ""
}

func joinOpts(o []string) string {
	s := ""
	for i, x := range o {
		if i > 0 {
			s += ","
		}
		s += x
	}
	return s
}

func timeString(t time.Time) string {
	if t.IsZero() {
		return "0001-01-01T00:00:00Z"
	}
	return t.Format(time.RFC3339Nano)
}
