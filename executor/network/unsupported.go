//go:build !linux

package network

import (
	"context"
	"errors"
)

func (m *Manager) create(ctx context.Context, name, subnet string) (*Network, error) {
	return nil, errors.ErrUnsupported
}

func (m *Manager) list(ctx context.Context) ([]Network, error) { return nil, errors.ErrUnsupported }

func (m *Manager) remove(ctx context.Context, name string) error { return errors.ErrUnsupported }

func (m *Manager) teardown(ctx context.Context) error { return errors.ErrUnsupported }

func (m *Manager) attach(ctx context.Context, req AttachRequest) (*Endpoint, error) {
	return nil, errors.ErrUnsupported
}

func (m *Manager) detach(ctx context.Context, containerID string) error {
	return errors.ErrUnsupported
}
