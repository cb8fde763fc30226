package cli

import (
	"github.com/vigil-sec/vigil/internal/detect"
	"github.com/vigil-sec/vigil/internal/intel"
)

// loadIntel merges a threat-intelligence update file with the shipped lists.
func loadIntel(path string) (detect.Intel, error) {
	return intel.Default().WithFile(path)
}
