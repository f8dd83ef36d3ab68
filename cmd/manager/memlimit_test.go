package main

import (
	"os"
	"runtime/debug"
	"testing"
)

func TestParseCgroupLimit(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"536870912\n", 536870912, true},
		{"max\n", 0, false},
		{"9223372036854771712\n", 0, false}, // cgroup v1: no limit
		{"", 0, false},
		{"garbage", 0, false},
		{"0", 0, false},
	} {
		got, ok := parseCgroupLimit(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseCgroupLimit(%q) = %d, %v; want %d, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestSetMemoryLimit(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(before) })
	files := func(m map[string]string) func(string) ([]byte, error) {
		return func(p string) ([]byte, error) {
			if v, ok := m[p]; ok {
				return []byte(v), nil
			}
			return nil, os.ErrNotExist
		}
	}
	if os.Getenv("GOMEMLIMIT") != "" {
		t.Fatal("run without GOMEMLIMIT: it turns setMemoryLimit off")
	}
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  int64
	}{
		{"cgroup v2", map[string]string{"/sys/fs/cgroup/memory.max": "1000000000\n"}, 900000000},
		{"cgroup v1", map[string]string{"/sys/fs/cgroup/memory/memory.limit_in_bytes": "1000000000\n"}, 900000000},
		{"no limit", map[string]string{"/sys/fs/cgroup/memory.max": "max\n"}, 0},
		{"no cgroup", nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			debug.SetMemoryLimit(before)
			if got := setMemoryLimit(files(tc.files)); got != tc.want {
				t.Errorf("setMemoryLimit = %d, want %d", got, tc.want)
			}
			if tc.want > 0 {
				if got := debug.SetMemoryLimit(-1); got != tc.want {
					t.Errorf("the runtime's limit is %d, want %d", got, tc.want)
				}
			}
		})
	}
	t.Setenv("GOMEMLIMIT", "1GiB")
	if got := setMemoryLimit(files(map[string]string{"/sys/fs/cgroup/memory.max": "1000\n"})); got != 0 {
		t.Errorf("with GOMEMLIMIT set: %d, want 0 (the runtime's own)", got)
	}
}
