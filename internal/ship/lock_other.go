//go:build !unix

package ship

import (
	"fmt"
	"os"
)

// lockDir only creates the lock file where flock is not available.
func lockDir(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock spool: %w", err)
	}
	return f, nil
}
