package console

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/vigil-sec/vigil/internal/server/store"
)

// Sign-in: the user pastes an admin or reader token; the console keeps it
// in an HttpOnly, SameSite=Strict cookie and authenticates it on every
// request like the API does, so revoking the token ends the session. Forms
// that change something also carry a CSRF token derived from the session
// token.

const (
	cookieName = "vigil_session"
	sessionAge = 12 * time.Hour
	maxToken   = 512
)

// session is the signed-in user of a request.
type session struct {
	store.Principal
	csrf string
}

// Admin reports whether the user may change alerts.
func (s session) Admin() bool { return s.Role == store.RoleAdmin }

// CSRF is the token forms carry.
func (s session) CSRF() string { return s.csrf }

func csrfToken(secret string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("vigil console form"))
	return hex.EncodeToString(m.Sum(nil))[:32]
}

// signedIn runs fn for a signed-in admin or reader; anyone else is sent to
// the sign-in page (an htmx request gets 401 and a redirect header). POSTs
// must carry the session's CSRF token.
func (c *Console) signedIn(fn func(http.ResponseWriter, *http.Request, session) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := c.session(r)
		if err != nil {
			if !errors.Is(err, store.ErrUnauthorized) {
				c.fail(w, r, nil, err)
				return
			}
			next := "/login?next=" + url.QueryEscape(r.URL.RequestURI())
			if r.Header.Get("HX-Request") != "" {
				w.Header().Set("HX-Redirect", next)
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			http.Redirect(w, r, next, http.StatusSeeOther)
			return
		}
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, maxForm)
			if !hmac.Equal([]byte(r.PostFormValue("csrf")), []byte(s.csrf)) {
				c.fail(w, r, &s, &pageError{http.StatusForbidden, "The form expired or did not come from this console; reload the page and try again."})
				return
			}
		}
		if err := fn(w, r, s); err != nil {
			c.fail(w, r, &s, err)
		}
	})
}

// maxForm bounds a form body.
const maxForm = 64 << 10

func (c *Console) session(r *http.Request) (session, error) {
	ck, err := r.Cookie(cookieName)
	if err != nil || ck.Value == "" || len(ck.Value) > maxToken {
		return session{}, store.ErrUnauthorized
	}
	p, err := c.cfg.Store.Authenticate(r.Context(), ck.Value)
	if err != nil {
		return session{}, err
	}
	if p.Role != store.RoleAdmin && p.Role != store.RoleReader {
		return session{}, store.ErrUnauthorized
	}
	return session{Principal: p, csrf: csrfToken(ck.Value)}, nil
}

func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	c.render(w, r, http.StatusOK, "login", nil, map[string]any{"Next": safeNext(r.URL.Query().Get("next"))})
}

func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	// A sign-in form posted from another site would sign the victim in
	// as the attacker's token: refuse it.
	if o := r.Header.Get("Origin"); o != "" && !sameOrigin(o, r) {
		c.fail(w, r, nil, &pageError{http.StatusForbidden, "Sign in from this console's own page."})
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	token := strings.TrimSpace(r.PostFormValue("token"))
	next := safeNext(r.PostFormValue("next"))
	refuse := func(msg string) {
		c.render(w, r, http.StatusUnauthorized, "login", nil, map[string]any{"Next": next, "Error": msg})
	}
	if token == "" || len(token) > maxToken {
		refuse("Paste an admin or reader token.")
		return
	}
	p, err := c.cfg.Store.Authenticate(r.Context(), token)
	switch {
	case errors.Is(err, store.ErrUnauthorized):
		refuse("That token is not valid.")
		return
	case err != nil:
		c.fail(w, r, nil, err)
		return
	case p.Role == store.RoleCluster:
		refuse("That is a cluster credential, which may only send data. Sign in with an admin or reader token.")
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: cookieName, Value: token, Path: "/", MaxAge: int(sessionAge.Seconds()),
		HttpOnly: true, Secure: c.cfg.Secure, SameSite: http.SameSiteStrictMode,
	})
	c.cfg.Log.Info("console sign-in", "user", p.Name, "role", p.Role)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request, _ session) error {
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: c.cfg.Secure, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/login", http.StatusSeeOther)
	return nil
}

// sameOrigin reports whether an Origin header names the host r was sent to.
func sameOrigin(origin string, r *http.Request) bool {
	u, err := url.Parse(origin)
	return err == nil && u.Host == r.Host
}

// safeNext keeps a post-sign-in redirect on this console: a local path
// (no control characters or backslashes, which browsers drop or turn into
// slashes), or the alerts page.
func safeNext(next string) string {
	if strings.IndexFunc(next, func(r rune) bool { return r < 0x20 || r == 0x7f || r == '\\' }) >= 0 {
		return "/alerts"
	}
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") ||
		strings.HasPrefix(next, "/login") {
		return "/alerts"
	}
	return next
}
