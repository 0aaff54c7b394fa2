package open_test

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/prefect-go/prefect-server/services/store"
	"github.com/prefect-go/prefect-server/services/store/filter"
	"github.com/prefect-go/prefect-server/services/store/open"
	"github.com/prefect-go/prefect-server/services/store/sqlite"
	"github.com/prefect-go/prefect-server/services/store/storetest"
)

func TestParseURL(t *testing.T) {
	cases := []struct {
		in      string
		dialect filter.Dialect
		dsn     string
	}{
		{"sqlite+aiosqlite:////root/.prefect/prefect.db", filter.SQLite, "/root/.prefect/prefect.db"},
		{"sqlite:///relative/prefect.db", filter.SQLite, "relative/prefect.db"},
		{"sqlite+aiosqlite:////abs/p.db?timeout=30", filter.SQLite, "/abs/p.db"},
		{"sqlite+aiosqlite:///:memory:", filter.SQLite, sqlite.Memory},
		{"sqlite://", filter.SQLite, sqlite.Memory},
		{"SQLite+AIOSQLite:////x.db", filter.SQLite, "/x.db"},
		{"postgresql+asyncpg://u:p@db:5432/prefect", filter.Postgres, "postgres://u:p@db:5432/prefect"},
		{"postgresql://u:p@db/prefect?sslmode=disable", filter.Postgres, "postgres://u:p@db/prefect?sslmode=disable"},
		{"postgres://u@db/prefect?application_name=x", filter.Postgres, "postgres://u@db/prefect?application_name=x"},
		{"postgresql+asyncpg://u:p@db/prefect?ssl=true", filter.Postgres, "postgres://u:p@db/prefect?sslmode=require"},
	}
	for _, c := range cases {
		got, err := open.ParseURL(c.in)
		if err != nil {
			t.Errorf("ParseURL(%q): %v", c.in, err)
			continue
		}
		if got.Dialect != c.dialect || got.DSN != c.dsn {
			t.Errorf("ParseURL(%q) = %v %q, want %v %q", c.in, got.Dialect, got.DSN, c.dialect, c.dsn)
		}
	}
	for _, bad := range []string{"", "prefect.db", "mysql://u@h/db", "sqlite://host/x.db", "postgresql://u:secret@[bad/db"} {
		_, err := open.ParseURL(bad)
		if err == nil {
			t.Errorf("ParseURL(%q) succeeded", bad)
		} else if strings.Contains(err.Error(), "secret") {
			t.Errorf("ParseURL(%q) error leaks the password: %v", bad, err)
		}
	}
}

func TestOpen(t *testing.T) {
	ctx := context.Background()
	urls := map[string]string{
		"sqlite file":   "sqlite+aiosqlite:///" + storetest.SQLitePath(t),
		"sqlite memory": "sqlite+aiosqlite:///:memory:",
	}
	t.Run("postgres", func(t *testing.T) {
		dsn := storetest.PostgresDSN(t)
		u, err := url.Parse(dsn)
		if err != nil {
			t.Fatal(err)
		}
		u.Scheme = "postgresql+asyncpg"
		check(t, ctx, u.String(), filter.Postgres)
	})
	for name, u := range urls {
		t.Run(name, func(t *testing.T) { check(t, ctx, u, filter.SQLite) })
	}
}

func check(t *testing.T, ctx context.Context, rawURL string, want filter.Dialect) {
	t.Helper()
	s, err := open.Open(ctx, rawURL)
	if err != nil {
		t.Fatalf("Open(%q): %v", rawURL, err)
	}
	defer s.Close()
	if s.Dialect() != want {
		t.Errorf("Open(%q).Dialect() = %v, want %v", rawURL, s.Dialect(), want)
	}
	if _, _, err := s.CreateFlow(ctx, store.FlowCreate{Name: "opened"}); err != nil {
		t.Fatal(err)
	}
}
