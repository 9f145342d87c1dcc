package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/kiln-build/kiln/executor/containers"
)

// statsRow is a container's line of kiln stats, under docker stats'
// --format field names.
type statsRow struct {
	ID, Container, Name, CPUPerc, MemUsage, MemPerc, NetIO, BlockIO, PIDs string
}

// statsHeaders are docker's table headers of statsRow's fields.
func statsHeaders() map[string]string {
	return map[string]string{"ID": "CONTAINER ID", "CPUPerc": "CPU %", "MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %", "NetIO": "NET I/O", "BlockIO": "BLOCK I/O"}
}

func (c *cli) statsCommand() *cobra.Command {
	var noStream, all bool
	var format string
	cmd := &cobra.Command{
		Use:   "stats [OPTIONS] [CONTAINER...]",
		Short: "Show containers' CPU, memory, network and block I/O use",
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			cs, err := c.containerStore(ctx)
			if err != nil {
				return asKilnError(err)
			}
			if format == "" {
				format = "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}"
			}
			f, err := newFormatter(format, statsHeaders())
			if err != nil {
				return err
			}
			tty := false
			if out, ok := c.stdout.(*os.File); ok {
				tty = term.IsTerminal(int(out.Fd()))
			}
			prev := map[string]sample{}
			for first := true; ; first = false {
				rows, next, err := statsRows(ctx, cs, args, all, prev)
				if err != nil {
					return asKilnError(err)
				}
				if first {
					// CPU % needs two samples.
					prev = next
					if !sleepCtx(ctx, 500*time.Millisecond) {
						return nil
					}
					continue
				}
				prev = next
				if tty && !noStream {
					fmt.Fprint(c.stdout, "\033[2J\033[H")
				}
				data := make([]any, len(rows))
				for i, r := range rows {
					if data[i], err = asTemplateData(r); err != nil {
						return err
					}
				}
				if err := f.write(c.stdout, data); err != nil {
					return err
				}
				if noStream || !sleepCtx(ctx, time.Second) {
					return nil
				}
			}
		},
	}
	cmd.Flags().BoolVar(&noStream, "no-stream", false, "print one sample and exit")
	cmd.Flags().BoolVarP(&all, "all", "a", false, "show all containers (default shows running ones)")
	cmd.Flags().StringVar(&format, "format", "", "Go template over each container, as docker's (e.g. '{{.Name}} {{.CPUPerc}}')")
	return cmd
}

// sample is one reading of a container's CPU time.
type sample struct {
	cpu uint64
	at  time.Time
}

// statsRows reads the containers asked for (all running ones without
// refs) and returns their rows, CPU % from the samples in prev, and the
// new samples.
func statsRows(ctx context.Context, cs *containers.Store, refs []string, all bool, prev map[string]sample) ([]statsRow, map[string]sample, error) {
	var list []*containers.Record
	if len(refs) > 0 {
		for _, ref := range refs {
			r, err := cs.Get(ctx, ref)
			if err != nil {
				return nil, nil, err
			}
			list = append(list, r)
		}
	} else {
		rs, err := cs.List(ctx)
		if err != nil {
			return nil, nil, err
		}
		for _, r := range rs {
			if all || r.Running() {
				list = append(list, r)
			}
		}
	}
	next := map[string]sample{}
	var rows []statsRow
	for _, r := range list {
		row := statsRow{ID: containers.ShortID(r.Config.ID), Container: containers.ShortID(r.Config.ID), Name: r.Config.Name,
			CPUPerc: "0.00%", MemUsage: "0B / 0B", MemPerc: "0.00%", NetIO: "0B / 0B", BlockIO: "0B / 0B", PIDs: "0"}
		if r.Running() && r.State.Pid > 0 {
			st, err := containers.ReadStats(&r.Config, r.State.Pid)
			if err == nil {
				now := time.Now()
				next[r.Config.ID] = sample{cpu: st.CPUNanos, at: now}
				if p, ok := prev[r.Config.ID]; ok && now.After(p.at) && st.CPUNanos >= p.cpu {
					row.CPUPerc = fmt.Sprintf("%.2f%%", float64(st.CPUNanos-p.cpu)/float64(now.Sub(p.at).Nanoseconds())*100)
				}
				row.MemUsage = binarySize(st.MemUsage) + " / " + binarySize(st.MemLimit)
				if st.MemLimit > 0 {
					row.MemPerc = fmt.Sprintf("%.2f%%", float64(st.MemUsage)/float64(st.MemLimit)*100)
				}
				row.NetIO = humanSize(int64(st.NetRx)) + " / " + humanSize(int64(st.NetTx))
				row.BlockIO = humanSize(int64(st.BlockRead)) + " / " + humanSize(int64(st.BlockWrite))
				row.PIDs = fmt.Sprint(st.PIDs)
			}
		}
		rows = append(rows, row)
	}
	return rows, next, nil
}

// sleepCtx sleeps d unless ctx ends first (then it reports false).
func sleepCtx(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// binarySize writes n as docker stats writes memory: four significant
// digits of binary units (1.84MiB, 64MiB).
func binarySize(n uint64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB"}
	f := float64(n)
	i := 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	return fmt.Sprintf("%.4g%s", f, units[i])
}
