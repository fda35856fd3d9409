// Package boothealth records whether this boot is good: the node came up
// and its workload (k3s) answered healthy within its time limit. Stage 2
// declares the outcome once per boot through a Declarer; `kestrel status`
// reads it back (Read) and shows it; the upgrade machinery subscribes to a
// good boot (Declarer.OnGood) to mark the booted slot good.
//
// The record is one JSON file on tmpfs (layout.BootHealth): it describes
// this boot only and is gone after a reboot, by design. It is 0600: a
// detail carries the reason a start failed, and only root runs `kestrel
// status` anyway (the control socket it asks is root's too). Declarers
// still never put a secret in a detail (internal/k3s/config's errors name
// keys, not values).
//
// Limits: a boot is declared once (good or not good) and never revised: a
// k3s that turns healthy after its deadline, or crashes after it was
// declared good, does not change the verdict (the supervisor's restart
// count shows the latter). OnGood listeners run in order; their errors are
// returned, not retried.
package boothealth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/kestrel-os/kestrel/internal/osfiles/atomicfile"
)

// State of the boot.
type State string

// Boot states.
const (
	Pending State = "pending"  // still waiting for the workload
	Good    State = "good"     // declared good
	NotGood State = "not-good" // the workload was not healthy in time, or could not start
)

// Record is what the file holds.
type Record struct {
	State    State     `json:"state"`
	Detail   string    `json:"detail"`
	Since    time.Time `json:"since"`
	Deadline time.Time `json:"deadline,omitzero"` // while Pending: when it turns NotGood
}

// String is the one line `kestrel status` prints.
func (r Record) String() string {
	switch r.State {
	case Good:
		return "good: " + r.Detail
	case NotGood:
		return "NOT GOOD: " + r.Detail
	}
	return "pending: " + r.Detail
}

// FileMode is the record's permission: root's only.
const FileMode os.FileMode = 0o600

// Declarer writes the record. The zero value is not usable: Path and Now
// are required.
type Declarer struct {
	Path string
	Now  func() time.Time
	// OnGood runs, in order, once the boot is declared good (the upgrade
	// issue marks the booted slot good here).
	OnGood []func(ctx context.Context) error
	// OnNotGood runs once when the boot is declared not good (the booted
	// slot's trial is then over: stage 2 reboots so the loader counts it).
	OnNotGood []func(detail string)

	mu       sync.Mutex
	declared bool
}

// ErrDeclared is returned when the boot was already declared.
var ErrDeclared = errors.New("boot health already declared")

// Pending records that the boot waits for its workload until deadline.
func (d *Declarer) Pending(detail string, deadline time.Time) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.declared {
		return ErrDeclared
	}
	return d.write(Record{State: Pending, Detail: detail, Since: d.Now(), Deadline: deadline})
}

// Good declares the boot good and runs the OnGood listeners.
func (d *Declarer) Good(ctx context.Context, detail string) error {
	if err := d.declare(Good, detail); err != nil {
		return err
	}
	var errs []error
	for i, f := range d.OnGood {
		if err := callListener(ctx, f); err != nil {
			errs = append(errs, fmt.Errorf("listener %d: %w", i, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("boot good, but: %w", err)
	}
	return nil
}

// callListener runs f, turning a panic into an error: the listeners run in
// PID 1, where a panic is a kernel panic and a node lost in the field.
func callListener(ctx context.Context, f func(context.Context) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return f(ctx)
}

// NotGood declares the boot not good.
func (d *Declarer) NotGood(detail string) error {
	if err := d.declare(NotGood, detail); err != nil {
		return err
	}
	for _, f := range d.OnNotGood {
		f(detail)
	}
	return nil
}

func (d *Declarer) declare(s State, detail string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.declared {
		return ErrDeclared
	}
	d.declared = true
	return d.write(Record{State: s, Detail: detail, Since: d.Now()})
}

func (d *Declarer) write(r Record) error {
	data, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("boot health: %w", err)
	}
	if err := atomicfile.Write(d.Path, append(data, '\n'), FileMode, atomicfile.NoChown, atomicfile.NoChown); err != nil {
		return fmt.Errorf("boot health: %w", err)
	}
	return nil
}

// Read returns the record at path; a missing file is (nil, nil): nothing
// was declared yet in this boot.
func Read(path string) (*Record, error) {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("boot health: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, 1<<16))
	if err != nil {
		return nil, fmt.Errorf("boot health: %w", err)
	}
	var r Record
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("boot health: %s: %w", path, err)
	}
	return &r, nil
}
