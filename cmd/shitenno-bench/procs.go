package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/shitenno/shitenno/internal/loopport"
)

// proc is a child process the runner started (backend, daemon, null
// responder). It is stopped by its own PID, never by name.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{} // closed once the process has exited
	gone atomic.Bool   // set just before done is closed, for exited
}

// startProc starts argv with stdout and stderr going to <work>/<name>.log.
func startProc(work, name string, argv ...string) (*proc, error) {
	logPath := filepath.Join(work, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = childEnv()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); p.gone.Store(true); close(p.done) }()
	return p, nil
}

// childEnv drops proxy variables: every hop of the benchmark is local.
func childEnv() []string {
	return slices.DeleteFunc(os.Environ(), isProxyVar)
}

// proxyVars are the variables (in any case) that would send a child's
// HTTP requests through a proxy.
var proxyVars = []string{"http_proxy", "https_proxy", "all_proxy", "no_proxy"}

// isProxyVar reports whether the environment entry kv sets one of
// proxyVars.
func isProxyVar(kv string) bool {
	k, _, _ := strings.Cut(kv, "=")
	return slices.Contains(proxyVars, strings.ToLower(k))
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool { return p.gone.Load() }

// stop sends SIGTERM, then SIGKILL after 5 s.
func (p *proc) stop() {
	if p == nil || p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// logTail returns the end of the process's log for error messages.
func (p *proc) logTail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}

// waitReady waits until addr accepts connections or p exits.
func (p *proc) waitReady(network, addr string) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout(network, addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if p.exited() {
			return fmt.Errorf("%s exited before listening on %s:\n%s", p.name, addr, p.logTail())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s does not listen on %s after 15 s:\n%s", p.name, addr, p.logTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// freePort is a loopback TCP port for a backend to listen on, never the
// one another backend of this run got (loopport.Pick).
func freePort() (int, error) { return loopport.Pick() }

// resetPeakRSS resets the kernel's peak-RSS (VmHWM) counter of pid
// (proc(5), /proc/pid/clear_refs, value 5), so each run reports its own
// peak. It fails harmlessly on kernels without it; the peak then covers
// the process's life so far, which is never lower.
func resetPeakRSS(pid int) {
	_ = os.WriteFile("/proc/"+strconv.Itoa(pid)+"/clear_refs", []byte("5"), 0)
}

// peakRSS returns VmHWM of pid in bytes (-1 when unknown).
func peakRSS(pid int) int64 {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			f := strings.Fields(v)
			if len(f) == 2 && f[1] == "kB" {
				n, err := strconv.ParseInt(f[0], 10, 64)
				if err == nil {
					return n << 10
				}
			}
		}
	}
	return -1
}

// clockTick is USER_HZ, the unit of /proc/pid/stat CPU times: 100 on
// every Linux architecture Go supports (sysconf(_SC_CLK_TCK) has no Go
// binding without cgo).
const clockTick = 10 * time.Millisecond

// procCPU returns pid's user+system CPU time (-1 when unknown): the sum
// of its threads' run time in nanoseconds from /proc/pid/task/*/schedstat
// when the kernel has it, else /proc/pid/stat in clock ticks. Ticks of
// 10 ms make a one-second run's CPU per request uncertain by a few per
// cent, too coarse for the limiter's on/off ratio. Go's runtime keeps its
// threads, so none of the process's time leaves with an exited thread.
func procCPU(pid int) time.Duration {
	if d := schedstatCPU(pid); d >= 0 {
		return d
	}
	return statCPU(pid)
}

// schedstatCPU sums the first field (time on CPU, ns) of every thread's
// schedstat; -1 when unavailable.
func schedstatCPU(pid int) time.Duration {
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	tasks, err := os.ReadDir(dir)
	if err != nil || len(tasks) == 0 {
		return -1
	}
	var sum time.Duration
	for _, t := range tasks {
		b, err := os.ReadFile(dir + "/" + t.Name() + "/schedstat")
		if err != nil {
			continue // the thread exited between the listing and the read
		}
		f := strings.Fields(string(b))
		if len(f) < 1 {
			return -1
		}
		ns, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return -1
		}
		sum += time.Duration(ns)
	}
	return sum
}

// statCPU reads utime+stime from /proc/pid/stat.
func statCPU(pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return -1
	}
	// Fields after the parenthesised command name; utime and stime are
	// fields 14 and 15 of proc(5), i.e. 12 and 13 after the name.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return -1
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return -1
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return -1
	}
	return time.Duration(u+s) * clockTick
}

// selfCPU returns this process's user+system CPU time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return -1
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// backendStats reads the built-in backend's counters: requests answered
// and requests that broke the contract. ok is false for a backend without
// them (the example backend).
func backendStats(base string) (requests, bad int64, ok bool) {
	c := http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil}}
	resp, err := c.Get(base + "stats")
	if err != nil {
		return 0, 0, false
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 100))
	if err != nil || resp.StatusCode != http.StatusOK {
		return 0, 0, false
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, 0, false
	}
	r, err1 := strconv.ParseInt(f[0], 10, 64)
	x, err2 := strconv.ParseInt(f[1], 10, 64)
	return r, x, err1 == nil && err2 == nil
}
