package migrations

import (
	"testing"
	"testing/fstest"
)

func TestLoadOrdersByVersion(t *testing.T) {
	fsys := fstest.MapFS{
		"d/0010_later.up.sql": {Data: []byte("B")},
		"d/0002_early.up.sql": {Data: []byte("A")},
		"d/README.md":         {Data: []byte("ignored")},
	}
	got, err := Load(fsys, "d")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Version != 2 || got[1].Version != 10 || got[0].SQL != "A" {
		t.Fatalf("Load = %+v", got)
	}
}

func TestLoadRejectsBadNames(t *testing.T) {
	for name, fsys := range map[string]fstest.MapFS{
		"duplicate": {"d/0001_a.up.sql": {}, "d/001_b.up.sql": {}},
		"no number": {"d/initial.up.sql": {}},
		"zero":      {"d/0000_x.up.sql": {}},
	} {
		if _, err := Load(fsys, "d"); err == nil {
			t.Errorf("%s: Load succeeded", name)
		}
	}
}

// The embedded sets must load, start at version 1 and match file for file.
func TestEmbedded(t *testing.T) {
	pg, err := Load(Postgres, "postgres")
	if err != nil || len(pg) == 0 || pg[0].Version != 1 {
		t.Fatalf("postgres migrations: %v %+v", err, pg)
	}
	lite, err := Load(SQLite, "sqlite")
	if err != nil || len(lite) != len(pg) {
		t.Fatalf("sqlite migrations: %v; %d files vs %d for postgres", err, len(lite), len(pg))
	}
	for i := range pg {
		if pg[i].Name != lite[i].Name {
			t.Errorf("migration %d named %s on postgres, %s on sqlite", i, pg[i].Name, lite[i].Name)
		}
	}
}
