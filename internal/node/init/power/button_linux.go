package power

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"unsafe"
)

// Linux input event codes (linux/input-event-codes.h).
const (
	evKey    = 0x01
	keyPower = 116
)

// eventSize is sizeof(struct input_event): a struct timeval of two longs,
// then type, code (u16) and value (s32).
var eventSize = int(2*unsafe.Sizeof(uintptr(0))) + 8

// WatchPowerButton reads every /dev/input/event* device under devInput and
// calls pressed when one reports KEY_POWER going down (the ACPI power
// button with the `button` and `evdev` modules, or a keyboard's power
// key). It returns how many devices it watches; the watching stops when
// ctx ends.
func WatchPowerButton(ctx context.Context, devInput string, pressed func()) int {
	paths, _ := filepath.Glob(filepath.Join(devInput, "event*"))
	n := 0
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		n++
		go func() { <-ctx.Done(); f.Close() }()
		go func() {
			defer func() { recover() }() // a bad event must not take PID 1 down; the button is lost
			readEvents(f, pressed)
		}()
	}
	return n
}

func readEvents(f *os.File, pressed func()) {
	buf := make([]byte, eventSize*16)
	for {
		n, err := f.Read(buf)
		if err != nil {
			return
		}
		for off := 0; off+eventSize <= n; off += eventSize {
			if IsPowerPress(buf[off : off+eventSize]) {
				pressed()
			}
		}
	}
}

// IsPowerPress reports whether one raw input_event is KEY_POWER pressed.
func IsPowerPress(ev []byte) bool {
	if len(ev) != eventSize {
		return false
	}
	tail := ev[len(ev)-8:]
	typ := binary.NativeEndian.Uint16(tail[0:])
	code := binary.NativeEndian.Uint16(tail[2:])
	value := int32(binary.NativeEndian.Uint32(tail[4:]))
	return typ == evKey && code == keyPower && value == 1
}
