package configdb_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/capbus/capbus/configstore"
	"github.com/capbus/capbus/configstore/configdb"
)

func Example() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "configstore-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)

	s, err := configdb.Open(filepath.Join(dir, "config.db"))
	if err != nil {
		panic(err)
	}
	defer s.Close()

	// The operator stores two versions of the weather agent's config.
	s.Put(ctx, "weather", "config", configstore.KindJSON, []byte(`{"station": "KPDX"}`), "admin")
	e, _ := s.Put(ctx, "weather", "config", configstore.KindJSON, []byte(`{"station": "KSEA"}`), "admin")
	fmt.Println("version", e.Version, "revision", e.Revision)

	// A bad edit is refused, naming the line and column.
	_, err = s.Put(ctx, "weather", "config", configstore.KindJSON, []byte("{\n  \"station\": KSEA\n}"), "admin")
	fmt.Println(err, errors.Is(err, configstore.ErrInvalid))

	// The agent decodes its config.
	var cfg struct{ Station string }
	cur, _ := s.Get(ctx, "weather", "config")
	cur.Decode(&cfg)
	fmt.Println("station", cfg.Station)

	// Roll back to version 1; the agent, at revision 2, catches up.
	s.Rollback(ctx, "weather", "config", 1, "admin")
	changes, _ := s.Changes(ctx, "weather", 2)
	for _, c := range changes {
		fmt.Printf("%s v%d r%d %s\n", c.Name, c.Version, c.Revision, c.Data)
	}
	// Output:
	// version 2 revision 2
	// config:2:14: invalid JSON: invalid character 'K' looking for beginning of value true
	// station KSEA
	// config v3 r3 {"station": "KPDX"}
}
