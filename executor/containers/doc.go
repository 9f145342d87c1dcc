// Package containers keeps kiln's containers: their records on disk, their
// logs, their named and anonymous volumes, and the per-container monitor
// (the "shim") that runs a container through an executor.Starter.
//
// Under a store root:
//
//	containers/<id>/config.json    what the container is (Config)
//	containers/<id>/state.json     what it is doing (State)
//	containers/<id>/container.log  its output, docker json-file format, rotated
//	containers/<id>/upper, work    its writable layer (overlay upper and work dirs)
//	containers/<id>/shim.sock      the running shim's control socket
//	containers/names.json          name -> ID, guarded by containers/names.lock
//	volumes/<name>/_data           volumes
//
// A container runs under a shim: kiln re-executed with ShimArg, detached
// into its own session so it outlives the CLI (kiln run -d). The shim starts
// the container when a client asks it to over the control socket, copies its
// output to the log and to attached clients, serves stop, kill, exec,
// pause, resize and wait, applies the restart policy and the health check,
// and records every transition in state.json. A container whose shim is
// gone (killed, or the machine restarted) is reported as exited.
package containers
