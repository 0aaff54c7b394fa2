// Package open turns a Prefect database URL into a store.Store. It lives
// apart from package store because it imports both adapters, which import
// store.
package open

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"github.com/prefect-go/prefect-server/services/store"
	"github.com/prefect-go/prefect-server/services/store/filter"
	"github.com/prefect-go/prefect-server/services/store/postgres"
	"github.com/prefect-go/prefect-server/services/store/sqlite"
)

// Target is a parsed database URL.
type Target struct {
	Dialect filter.Dialect
	// DSN is what the adapter opens: a postgres:// URL for PostgreSQL, a
	// file path or sqlite.Memory for SQLite.
	DSN string
}

// ParseURL accepts the forms of PREFECT_SERVER_DATABASE_CONNECTION_URL,
// with SQLAlchemy's meaning:
//
//	sqlite+aiosqlite:////abs/path.db   absolute path /abs/path.db
//	sqlite:///rel/path.db              path relative to the working directory
//	sqlite+aiosqlite:///:memory:       in-memory (also sqlite:// with no path)
//	postgresql+asyncpg://user:pass@host:port/db?opts
//	postgresql://...  postgres://...
//
// The +driver part is dropped; PostgreSQL query options are kept, with
// asyncpg's ssl=<mode> rewritten to libpq's sslmode=<mode>. SQLite query
// options (SQLAlchemy connect args) are ignored: the adapter sets its own.
func ParseURL(raw string) (Target, error) {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return Target{}, fmt.Errorf("database URL %q: missing scheme", redact(raw))
	}
	base, _, _ := strings.Cut(strings.ToLower(scheme), "+")
	switch base {
	case "sqlite":
		path, _, _ := strings.Cut(rest, "?")
		if path == "" {
			return Target{Dialect: filter.SQLite, DSN: sqlite.Memory}, nil
		}
		if !strings.HasPrefix(path, "/") {
			return Target{}, fmt.Errorf("database URL %q: SQLite URLs have no host: use sqlite:///relative or sqlite:////absolute", raw)
		}
		path = path[1:]
		if path == "" || path == sqlite.Memory {
			return Target{Dialect: filter.SQLite, DSN: sqlite.Memory}, nil
		}
		return Target{Dialect: filter.SQLite, DSN: path}, nil
	case "postgresql", "postgres":
		u, err := url.Parse("postgres://" + rest)
		if err != nil {
			// url.Error quotes the whole URL, password included.
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err
			}
			return Target{}, fmt.Errorf("database URL %q: %v", redact(raw), err)
		}
		q := u.Query()
		if v := q.Get("ssl"); v != "" {
			q.Del("ssl")
			if q.Get("sslmode") == "" {
				q.Set("sslmode", sslMode(v))
			}
			u.RawQuery = q.Encode()
		}
		return Target{Dialect: filter.Postgres, DSN: u.String()}, nil
	}
	return Target{}, fmt.Errorf("database URL %q: unsupported scheme %q (want sqlite or postgresql)", redact(raw), scheme)
}

// sslMode maps asyncpg's ssl values to libpq's sslmode.
func sslMode(v string) string {
	switch strings.ToLower(v) {
	case "true", "1", "yes", "on":
		return "require"
	case "false", "0", "no", "off":
		return "disable"
	}
	return v
}

// userinfo matches the credentials of a URL that url.Parse may reject.
var userinfo = regexp.MustCompile(`://([^:@/]*):[^@/]*@`)

// redact hides a password so URLs can appear in errors and logs.
func redact(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		if u.User != nil {
			return u.Redacted()
		}
		return raw
	}
	return userinfo.ReplaceAllString(raw, "://$1:xxxxx@")
}

// Open parses the URL, opens the matching adapter and applies migrations.
func Open(ctx context.Context, rawURL string) (store.Store, error) {
	t, err := ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	if t.Dialect == filter.Postgres {
		s, err := postgres.Open(ctx, t.DSN)
		if err != nil {
			return nil, err
		}
		return s, nil
	}
	s, err := sqlite.Open(ctx, t.DSN)
	if err != nil {
		return nil, err
	}
	return s, nil
}
