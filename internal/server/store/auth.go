package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Role is what a principal may do.
type Role string

// Roles.
const (
	RoleAdmin   Role = "admin"   // everything
	RoleReader  Role = "reader"  // view only
	RoleCluster Role = "cluster" // ingest for its own cluster only
)

// Principal is who presented a secret.
type Principal struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	Role Role   `json:"role"`
	// ClusterID is set for RoleCluster: the only cluster it may write.
	ClusterID string `json:"cluster_id,omitempty"`
}

// secretPrefix starts every token and credential, so that secret scanners
// and people recognise them.
const secretPrefix = "vgl_"

func roleLetter(r Role) string {
	switch r {
	case RoleAdmin:
		return "a"
	case RoleReader:
		return "r"
	case RoleCluster:
		return "c"
	}
	return ""
}

// newSecret makes "vgl_<role letter>_<43 base64url characters>" from 32
// random bytes, and its hash.
func newSecret(r Role) (secret, hash string, err error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", fmt.Errorf("make secret: %w", err)
	}
	secret = secretPrefix + roleLetter(r) + "_" + base64.RawURLEncoding.EncodeToString(b[:])
	return secret, hashSecret(secret), nil
}

func hashSecret(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

// CreateToken makes an admin or reader token named name and returns its
// secret, which is not stored and cannot be shown again.
func (s *Store) CreateToken(ctx context.Context, name string, role Role) (string, error) {
	if role != RoleAdmin && role != RoleReader {
		return "", fmt.Errorf("create token: %w: role %q (want admin or reader)", ErrInvalid, role)
	}
	name = strings.TrimSpace(name)
	if name == "" || len(name) > 200 {
		return "", fmt.Errorf("create token: %w: a name of 1 to 200 characters is required", ErrInvalid)
	}
	secret, hash, err := newSecret(role)
	if err != nil {
		return "", err
	}
	_, err = s.w.ExecContext(ctx, s.d.q(`INSERT INTO credentials (hash, id, name, role, cluster_id, created_at)
		VALUES (?, ?, ?, ?, '', ?)`), hash, newID(), name, string(role), ts(time.Now()))
	if err != nil {
		return "", fmt.Errorf("create token: %w", err)
	}
	return secret, nil
}

// Authenticate finds the token or cluster credential whose secret this is.
// Any failure to match is ErrUnauthorized. Only the secret's SHA-256 is
// looked up, so the comparison leaks nothing about stored secrets.
func (s *Store) Authenticate(ctx context.Context, secret string) (Principal, error) {
	if !strings.HasPrefix(secret, secretPrefix) || len(secret) > 256 {
		return Principal{}, ErrUnauthorized
	}
	var p Principal
	var role string
	err := s.r.QueryRowContext(ctx, s.d.q(`SELECT c.id, c.name, c.role, c.cluster_id FROM credentials c
		WHERE c.hash = ?`), hashSecret(secret)).Scan(&p.ID, &p.Name, &role, &p.ClusterID)
	if errors.Is(err, sql.ErrNoRows) {
		return Principal{}, ErrUnauthorized
	}
	if err != nil {
		return Principal{}, fmt.Errorf("authenticate: %w", err)
	}
	p.Role = Role(role)
	return p, nil
}
