package network

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// createNetNS makes a new network namespace with lo up and bind-mounts it
// at path, so it outlives this process until deleteNetNS.
func createNetNS(path string) (err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create netns: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return fmt.Errorf("create netns: %w", err)
	}
	f.Close()
	defer func() {
		if err != nil {
			deleteNetNS(path)
		}
	}()

	errc := make(chan error, 1)
	go func() {
		// The thread is never unlocked: it ends up in the new namespace, so
		// the runtime throws it away when this goroutine returns.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("unshare: %w", err)
			return
		}
		self := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		if err := unix.Mount(self, path, "", unix.MS_BIND, ""); err != nil {
			errc <- fmt.Errorf("bind-mount %s: %w", path, err)
			return
		}
		lo, err := netlink.LinkByName("lo")
		if err == nil {
			err = netlink.LinkSetUp(lo)
		}
		if err != nil {
			errc <- fmt.Errorf("bring lo up: %w", err)
			return
		}
		errc <- nil
	}()
	if err := <-errc; err != nil {
		return fmt.Errorf("create netns: %w", err)
	}
	return nil
}

// deleteNetNS unmounts and removes a namespace made by createNetNS; a
// missing one is fine. Processes still inside keep the namespace alive.
func deleteNetNS(path string) error {
	err := unix.Unmount(path, unix.MNT_DETACH)
	if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount netns %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove netns %s: %w", path, err)
	}
	return nil
}

// nsHandle opens a netlink handle inside the namespace at path.
func nsHandle(path string) (*netlink.Handle, netns.NsHandle, error) {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil, 0, fmt.Errorf("open netns %s: %w", path, err)
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		ns.Close()
		return nil, 0, fmt.Errorf("netlink in netns %s: %w", path, err)
	}
	return h, ns, nil
}
