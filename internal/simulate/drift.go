package simulate

import "context"

func drift() *Scenario {
	return &Scenario{
		ID:      "drift",
		Summary: "writes a binary that is not in the image (the container's upper layer) and runs it",
		Rules:   []string{"runtime.drift-binary-executed"},
		Victim:  VictimSpec{Name: "drift"},
		Run: func(ctx context.Context, s *Session) error {
			if _, err := s.Exec(ctx, "/bin/cp", "/bin/busybox", "/usr/local/bin/vigil-sim-drift"); err != nil {
				return err
			}
			s.Step("runtime.drift-binary-executed")
			_, err := s.Exec(ctx, "/usr/local/bin/vigil-sim-drift")
			return err
		},
	}
}
