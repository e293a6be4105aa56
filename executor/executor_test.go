package executor

import (
	"context"
	"errors"
	"testing"
)

type nopDriver struct{}

func (nopDriver) Start(context.Context, Spec) (*Instance, error) { return &Instance{}, nil }
func (nopDriver) Stop(context.Context, *Instance) error          { return nil }
func (nopDriver) Quarantine(context.Context, *Instance) error    { return nil }
func (nopDriver) List(context.Context) ([]*Instance, error)      { return nil, nil }

func TestRegistry(t *testing.T) {
	Register("test-nop", func(Env) (Driver, error) { return nopDriver{}, nil })
	if _, err := New("test-nop", Env{}); err != nil {
		t.Fatal(err)
	}
	if _, err := New("no-such-driver", Env{}); !errors.Is(err, ErrUnknownDriver) {
		t.Fatalf("want ErrUnknownDriver, got %v", err)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("duplicate registration did not panic")
		}
	}()
	Register("test-nop", func(Env) (Driver, error) { return nopDriver{}, nil })
}
