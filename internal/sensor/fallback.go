package sensor

import (
	"context"
	"errors"
)

func (s *Sensor) runFallback(ctx context.Context, warning string) error {
	return errors.New(warning)
}
