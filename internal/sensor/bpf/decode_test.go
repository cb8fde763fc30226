package bpf

import "testing"

func TestTTYName(t *testing.T) {
	for kernel, want := range map[string]string{
		"pts0": "pts/0", "pts12": "pts/12", "tty1": "tty1", "ttyS0": "ttyS0", "console": "console",
		"": "", "pts": "pts", "ptsx": "ptsx",
	} {
		if got := ttyName(kernel); got != want {
			t.Errorf("ttyName(%q) = %q, want %q", kernel, got, want)
		}
	}
}
