package simulate

import "context"

// Planted credentials: files where cloud CLIs, kubectl, ssh and git keep
// them, with obviously fake contents.
var plantedCredentials = map[string]File{
	"/root/.aws/credentials":     {Data: []byte("[default]\naws_access_key_id = vigil-sim-fake\naws_secret_access_key = vigil-sim-fake\n"), Mode: 0o600},
	"/root/.kube/config":         {Data: []byte("apiVersion: v1\nkind: Config\nusers:\n- name: vigil-sim\n  user:\n    token: vigil-sim-fake\n"), Mode: 0o600},
	"/root/.ssh/id_rsa":          {Data: []byte("-----BEGIN OPENSSH PRIVATE KEY-----\nvigil-sim-fake\n-----END OPENSSH PRIVATE KEY-----\n"), Mode: 0o600},
	"/home/app/.git-credentials": {Data: []byte("https://vigil-sim:vigil-sim-fake@git.example.invalid\n"), Mode: 0o600},
}

func secrets() *Scenario {
	return &Scenario{
		ID:      "secrets",
		Summary: "searches for credential files (.aws/credentials, .kube/config, id_rsa, .git-credentials), reads them, greps the environment for keys",
		Rules:   []string{"runtime.secret-reconnaissance", "runtime.sensitive-file-access"},
		Victim: VictimSpec{
			Name:  "secrets",
			Env:   []string{"AWS_ACCESS_KEY_ID=vigil-sim-fake", "AWS_SECRET_ACCESS_KEY=vigil-sim-fake", "API_KEY=vigil-sim-fake"},
			Files: plantedCredentials,
		},
		Run: func(ctx context.Context, s *Session) error {
			s.Step("runtime.secret-reconnaissance")
			for _, args := range [][]string{
				{"/bin/find", "/", "-xdev", "(", "-name", "credentials", "-o", "-name", "id_rsa", "-o", "-name", ".git-credentials", "-o", "-path", "*/.kube/config", ")"},
				{"/bin/grep", "-r", "-l", "aws_secret_access_key", "/root", "/home"},
				{"/bin/sh", "-c", "env | grep -i key"},
			} {
				if _, err := s.Exec(ctx, args...); err != nil {
					return err
				}
			}
			s.Step("runtime.sensitive-file-access")
			for _, args := range [][]string{
				{"/bin/cat", "/root/.aws/credentials"},
				{"/bin/cat", "/home/app/.git-credentials"},
			} {
				if _, err := s.Exec(ctx, args...); err != nil {
					return err
				}
			}
			return nil
		},
	}
}
