package main

import (
	"errors"
	"testing"
)

func TestDefaultMemoryLimit(t *testing.T) {
	t.Parallel()
	files := func(m map[string]string) func(string) ([]byte, error) {
		return func(p string) ([]byte, error) {
			if v, ok := m[p]; ok {
				return []byte(v), nil
			}
			return nil, errors.New("no such file")
		}
	}
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == "GOMEMLIMIT" {
				return v
			}
			return ""
		}
	}
	for _, tc := range []struct {
		name  string
		env   string
		files map[string]string
		want  int64
	}{
		{"GOMEMLIMIT set: the operator decides", "1GiB", nil, 0},
		{"no cgroup limit", "", map[string]string{"/sys/fs/cgroup/memory.max": "max\n"}, 512 << 20},
		{"v1 without a limit", "", map[string]string{"/sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712"}, 512 << 20},
		{"a 256 MiB container", "", map[string]string{"/sys/fs/cgroup/memory.max": "268435456\n"}, 192 << 20},
		{"a 4 GiB container", "", map[string]string{"/sys/fs/cgroup/memory.max": "4294967296"}, 512 << 20},
		{"v1 limit", "", map[string]string{"/sys/fs/cgroup/memory/memory.limit_in_bytes": "402653184"}, 288 << 20},
		{"no cgroup files", "", nil, 512 << 20},
	} {
		if got := defaultMemoryLimit(env(tc.env), files(tc.files)); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
}
