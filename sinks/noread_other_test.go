//go:build !linux

package sinks

import "errors"

// withoutReadOverride needs per-thread capabilities, which only Linux has.
func withoutReadOverride(func() error) error { return errors.ErrUnsupported }
