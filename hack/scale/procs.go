package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// clockTicks is the unit of utime and stime in /proc/<pid>/stat (USER_HZ), 100 on
// every Linux this runs on.
const clockTicks = 100

// cpuSeconds is the CPU time pid has used, user and system, in seconds.
func cpuSeconds(pid int) (float64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatCPU(string(raw))
}

// parseStatCPU reads utime and stime, fields 14 and 15 of /proc/<pid>/stat. The
// second field, the command, is in parentheses and may hold spaces.
func parseStatCPU(stat string) (float64, error) {
	end := strings.LastIndexByte(stat, ')')
	if end < 0 {
		return 0, fmt.Errorf("malformed stat: %q", stat)
	}
	fields := strings.Fields(stat[end+1:])
	// fields[0] is field 3 (state): utime is field 14, stime 15.
	if len(fields) < 13 {
		return 0, fmt.Errorf("malformed stat: %q", stat)
	}
	utime, err1 := strconv.ParseFloat(fields[11], 64)
	stime, err2 := strconv.ParseFloat(fields[12], 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("malformed stat: %q", stat)
	}
	return (utime + stime) / clockTicks, nil
}

// peakRSS is the most resident memory pid has used (VmHWM), in MiB.
func peakRSS(pid int) (float64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	return parseStatusKiB(string(raw), "VmHWM")
}

// parseStatusKiB reads the kB value of field in /proc/<pid>/status, in MiB.
func parseStatusKiB(status, field string) (float64, error) {
	for _, line := range strings.Split(status, "\n") {
		name, rest, ok := strings.Cut(line, ":")
		if !ok || name != field {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("malformed %s line: %q", field, line)
		}
		kib, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return 0, err
		}
		return kib / 1024, nil
	}
	return 0, fmt.Errorf("no %s in status", field)
}

// findProcess returns the PID of the process whose command line holds every one of
// args, or 0.
func findProcess(args ...string) int {
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		raw, err := os.ReadFile(filepath.Join(d, "cmdline"))
		if err != nil || len(raw) == 0 {
			continue
		}
		cmd := string(bytes.ReplaceAll(raw, []byte{0}, []byte{' '}))
		all := true
		for _, a := range args {
			if !strings.Contains(cmd, a) {
				all = false
				break
			}
		}
		if all {
			pid, _ := strconv.Atoi(filepath.Base(d))
			return pid
		}
	}
	return 0
}

// argValue returns the value of --name=value in pid's command line, or "".
func argValue(pid int, name string) string {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return ""
	}
	for _, a := range bytes.Split(raw, []byte{0}) {
		if v, ok := strings.CutPrefix(string(a), "--"+name+"="); ok {
			return v
		}
	}
	return ""
}
