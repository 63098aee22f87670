package app

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
)

// Start-up failures are one line each: what failed, where, and what to do about it. Start stops
// whatever it had started before it returns one.

// source names the config file ("the built-in demo config" when none).
func (c *Config) source() string {
	if c.Path == "" {
		return "the built-in demo config"
	}
	return c.Path
}

// configRef names where a key is set, for the fix part of a message.
func (c *Config) configRef(key string) string {
	env := "SHOUDAN_" + strings.ToUpper(strings.NewReplacer(".", "_").Replace(key))
	file := c.source()
	for _, k := range envKeys {
		if k == key {
			return fmt.Sprintf("%s in %s (or %s)", key, file, env)
		}
	}
	return fmt.Sprintf("%s in %s", key, file)
}

// addrError explains a failure to listen on addr, configured under key.
func (c *Config) addrError(key, addr string, err error) error {
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("%s: port %s is already in use (another program, or another shoudan, listens on %s): stop it, or move this one to a free port with %s",
			key, port(addr), addr, c.configRef(key))
	}
	if errors.Is(err, syscall.EACCES) {
		return fmt.Errorf("%s: not allowed to listen on %s (ports below 1024 need privileges): choose a port above 1024 with %s", key, addr, c.configRef(key))
	}
	return fmt.Errorf("%s: cannot listen on %s: %v: fix %s", key, addr, unwrapOp(err), c.configRef(key))
}

func port(addr string) string {
	if _, p, err := net.SplitHostPort(addr); err == nil {
		return p
	}
	return addr
}

// unwrapOp drops net.OpError's "listen tcp 127.0.0.1:5000:" prefix (the message says it).
func unwrapOp(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err
	}
	return err
}

// listenAddrs are the addresses Start will listen on, with the key each comes from.
func (c *Config) listenAddrs() [][2]string {
	var out [][2]string
	for i, l := range c.Listeners {
		out = append(out, [2]string{fmt.Sprintf("listeners[%d].addr", i), l.Addr})
	}
	if c.Admin.Addr != "" {
		out = append(out, [2]string{"admin.addr", c.Admin.Addr})
	}
	if c.MerchantAPI.Addr != "" && c.MerchantAPI.Addr != "off" {
		out = append(out, [2]string{"merchant_api.addr", c.MerchantAPI.Addr})
	}
	if len(c.Issuer.Addrs) == 0 {
		out = append(out, [2]string{"issuer.sim.listen", c.Issuer.Sim.Listen})
		if c.Issuer.Sim.Control != "" {
			out = append(out, [2]string{"issuer.sim.control", c.Issuer.Sim.Control})
		}
	}
	return out
}

// checkPorts fails fast, before anything is started, when a configured port is taken. (The
// real listen still reports a port taken in between, the same way.)
func (c *Config) checkPorts() error {
	for _, ka := range c.listenAddrs() {
		key, addr := ka[0], ka[1]
		if addr == "" || port(addr) == "0" {
			continue
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return c.addrError(key, addr, err)
		}
		ln.Close()
	}
	return nil
}

// dataDirLock is the lock that makes one `serve` the owner of a data directory.
type dataDirLock struct{ f *os.File }

// lockDataDir creates the data directory and takes its lock, or says who holds it.
func (c *Config) lockDataDir() (*dataDirLock, error) {
	dir, _ := filepath.Abs(c.DataDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, c.dataDirError(dir, err)
	}
	path := filepath.Join(dir, "serve.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, c.dataDirError(dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		b, _ := os.ReadFile(path)
		f.Close()
		who := "another shoudan serve"
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
			who = fmt.Sprintf("another shoudan serve (pid %d)", pid)
		}
		return nil, fmt.Errorf("data_dir: %s is in use by %s: stop that one first, or give this one its own data directory with %s",
			dir, who, c.configRef("data_dir"))
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return &dataDirLock{f: f}, nil
}

func (l *dataDirLock) release() {
	if l != nil && l.f != nil {
		_ = l.f.Truncate(0)
		_ = syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
		_ = l.f.Close()
		l.f = nil
	}
}

func (c *Config) dataDirError(dir string, err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		err = fmt.Errorf("%s: %v", pe.Path, pe.Err)
	}
	return fmt.Errorf("data_dir: cannot use %s (%v): choose a directory this user can create and write with %s", dir, err, c.configRef("data_dir"))
}

var userinfo = regexp.MustCompile(`(://[^:/@\s]*:)[^@\s]*@`)

// RedactURL hides the password of a database URL (URL or key=value form) for messages.
func RedactURL(s string) string {
	if u, err := url.Parse(s); err == nil && u.Scheme != "" {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
		return u.String()
	}
	if userinfo.MatchString(s) {
		return userinfo.ReplaceAllString(s, "${1}xxxxx@")
	}
	fields := strings.Fields(s)
	for i, f := range fields {
		if strings.HasPrefix(f, "password=") {
			fields[i] = "password=xxxxx"
		}
	}
	return strings.Join(fields, " ")
}
