package embedded

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	// The SQLite driver FerretDB itself uses (same module version), so
	// both share one SQLite library and its in-process file locking.
	_ "modernc.org/sqlite"
)

// Why this exists: FerretDB v1.24 on SQLite looks a document up by _id
// with WHERE _ferretdb_sjson->'$._id' = ?, but indexes _id as
// (_ferretdb_sjson->"_id"). SQLite uses an expression index only for the
// identical expression, so every find, update and delete by _id scans the
// whole table and parses every document's JSON: measured, an update by _id
// took 1 ms with 10 documents and 8 ms with 1,000, and the local end-to-end
// latency grew with the data. indexIDs adds an index on the expression the
// queries use to every collection table, so lookups by _id stay O(log n).
//
// The extra index is invisible to FerretDB (it keeps its own index list in
// _ferretdb_collections and never reads sqlite_master), is maintained by
// SQLite on every write, and goes away with its table when a collection is
// dropped. FerretDB waits on a locked database (busy_timeout 10 s), so the
// one-time CREATE INDEX per table is safe while it serves requests.

// indexCheckEvery is how soon a new collection gets the index; until then
// it is merely slower.
const indexCheckEvery = 250 * time.Millisecond

// indexIDs adds the _id expression index to new collection tables of every
// database file under dir until ctx ends. A file is looked at again only
// when it (or its WAL) changed, so idle databases cost a stat per tick.
func indexIDs(ctx context.Context, dir string, logger *slog.Logger) {
	seen := map[string]time.Time{}
	t := time.NewTicker(indexCheckEvery)
	defer t.Stop()
	for {
		files, _ := filepath.Glob(filepath.Join(dir, "*.sqlite"))
		for _, f := range files {
			mod := modTime(f)
			if last, ok := seen[f]; ok && !mod.After(last) {
				continue
			}
			if err := indexFile(ctx, f); err != nil {
				if ctx.Err() != nil {
					return
				}
				// Only slower without it; try again on the next change.
				logger.Debug("embedded mongo: _id index", "file", filepath.Base(f), "err", err)
				continue
			}
			seen[f] = mod
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// modTime is the later of the database file's and its WAL's times.
func modTime(f string) time.Time {
	var m time.Time
	for _, p := range []string{f, f + "-wal"} {
		if st, err := os.Stat(p); err == nil && st.ModTime().After(m) {
			m = st.ModTime()
		}
	}
	return m
}

// indexFile creates the missing _id expression indexes of one database.
// It opens the file only for the check: FerretDB deletes the file when the
// database is dropped, and a handle kept open would go on seeing the old one.
func indexFile(ctx context.Context, f string) error {
	db, err := sql.Open("sqlite", "file:"+f+"?mode=rw&_pragma=busy_timeout(10000)")
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	rows, err := db.QueryContext(ctx, `SELECT c.table_name FROM _ferretdb_collections c
		WHERE NOT EXISTS (SELECT 1 FROM sqlite_master m WHERE m.type = 'index' AND m.name = c.table_name || '__id_expr')`)
	if err != nil {
		return err // a brand new file has no _ferretdb_collections yet
	}
	var tables []string
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			rows.Close()
			return err
		}
		tables = append(tables, t)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, t := range tables {
		q := fmt.Sprintf(`CREATE INDEX IF NOT EXISTS %q ON %q (_ferretdb_sjson->'$._id')`, t+"__id_expr", t)
		if _, err := db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("%s: %w", t, err)
		}
	}
	return nil
}
