package hsm

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/shoudan/shoudan/spec/keys"
	"golang.org/x/sys/unix"
)

// Importer is what a key ceremony needs of a security module.
type Importer interface {
	ComponentKCV(usage string, c []byte) (string, error)
	Import(usage string, clear []byte) (keys.Block, error)
}

// Ceremony enters a key from components held by different custodians (split knowledge, dual
// control): each types a component unseen, sees its check value, and the module combines them by
// XOR. The combined key's check value must match the one on the key form (Expect, or typed at
// the end) before anything is returned: a mistyped component gives another check value and no
// key. Clear components are never written anywhere and are zeroed when done.
type Ceremony struct {
	Usage      string // TMK, ZPK or ZMK (the zone master key, AES)
	For        string // what the key is for, as shown to the custodians
	Components int    // 2 or 3
	Expect     string // the expected check value of the combined key; "" = ask at the end
	In         io.Reader
	Out        io.Writer
}

// Run carries out the ceremony with module m.
func (c Ceremony) Run(m Importer) (keys.Block, error) {
	if c.Components < 2 || c.Components > 3 {
		return keys.Block{}, fmt.Errorf("key ceremony: expected 2 or 3 components, found %d", c.Components)
	}
	digits := "16, 32 or 48"
	if c.Usage == "ZMK" {
		digits = "32 or 64"
	}
	fmt.Fprintf(c.Out, "Key ceremony: %s for %s, %d components.\nEach custodian enters a component (%s hex digits); it is not shown.\n", c.Usage, c.For, c.Components, digits)
	r := bufio.NewReader(c.In)
	var combined []byte
	defer func() { zero(combined) }()
	for i := 1; i <= c.Components; i++ {
		fmt.Fprintf(c.Out, "Component %d of %d: ", i, c.Components)
		line, err := readSecret(c.In, r)
		fmt.Fprintln(c.Out)
		if err != nil {
			return keys.Block{}, fmt.Errorf("component %d: %w", i, err)
		}
		comp, err := parseComponent(line, c.Usage == "ZMK")
		zero(line)
		if err != nil {
			return keys.Block{}, fmt.Errorf("component %d: %w", i, err)
		}
		if combined != nil && len(comp) != len(combined) {
			zero(comp)
			return keys.Block{}, fmt.Errorf("component %d: expected %d hex digits like component 1, found %d", i, 2*len(combined), 2*len(comp))
		}
		kcv, err := m.ComponentKCV(c.Usage, comp)
		if err != nil {
			zero(comp)
			return keys.Block{}, err
		}
		fmt.Fprintf(c.Out, "  component %d check value: %s\n", i, kcv)
		if combined == nil {
			combined = make([]byte, len(comp))
		}
		for j := range comp {
			combined[j] ^= comp[j]
		}
		zero(comp)
	}
	kcv, err := m.ComponentKCV(c.Usage, combined)
	if err != nil {
		return keys.Block{}, err
	}
	fmt.Fprintf(c.Out, "Combined key check value: %s\n", kcv)
	want := c.Expect
	if want == "" {
		fmt.Fprint(c.Out, "Type the check value from the key form to confirm: ")
		l, err := r.ReadString('\n')
		if err != nil && l == "" {
			return keys.Block{}, errors.New("key ceremony: no check value to confirm: nothing stored")
		}
		want = l
	}
	want = strings.ToUpper(strings.TrimSpace(want))
	if len(want) > 6 {
		want = want[:6]
	}
	if want != kcv {
		return keys.Block{}, fmt.Errorf("key ceremony: the combined key's check value is %s, the key form says %s: a component was mistyped; nothing stored", kcv, want)
	}
	b, err := m.Import(c.Usage, combined)
	combined = nil // Import zeroed it
	if err != nil {
		return keys.Block{}, err
	}
	fmt.Fprintf(c.Out, "Key stored as a block under KEK %s, check value %s.\n", b.KEK, b.KCV)
	return b, nil
}

// readSecret reads one line, without echo when in is a terminal.
func readSecret(in io.Reader, r *bufio.Reader) ([]byte, error) {
	if f, ok := in.(*os.File); ok {
		if t, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS); err == nil {
			quiet := *t
			quiet.Lflag &^= unix.ECHO
			quiet.Lflag |= unix.ICANON
			if err := unix.IoctlSetTermios(int(f.Fd()), unix.TCSETS, &quiet); err == nil {
				defer unix.IoctlSetTermios(int(f.Fd()), unix.TCSETS, t)
			}
		}
	}
	line, err := r.ReadSlice('\n')
	if err != nil && len(line) == 0 {
		return nil, fmt.Errorf("no input: %w", err)
	}
	out := append([]byte(nil), bytes.TrimSpace(line)...)
	zero(line) // the reader's buffer
	return out, nil
}

// parseComponent decodes hex digits (spaces allowed between groups) without making strings of
// them, so that every copy can be zeroed.
func parseComponent(s []byte, aes bool) ([]byte, error) {
	t := make([]byte, 0, len(s))
	defer func() { zero(t) }()
	for _, c := range s {
		if c != ' ' {
			t = append(t, c)
		}
	}
	if n := len(t); aes && n != 32 && n != 64 {
		return nil, fmt.Errorf("expected 32 or 64 hex digits (an AES-128 or AES-256 key), found %d characters", n)
	} else if !aes && n != 16 && n != 32 && n != 48 {
		return nil, fmt.Errorf("expected 16, 32 or 48 hex digits, found %d characters", n)
	}
	b := make([]byte, len(t)/2)
	if _, err := hex.Decode(b, t); err != nil {
		zero(b)
		return nil, errors.New("expected hex digits 0-9 A-F only")
	}
	return b, nil
}
