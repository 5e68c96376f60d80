package embedded

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// FerretDB's lookup by _id must use an index once the collection exists,
// including collections created after the server started, and the server
// must keep working with the extra index (writes, unique _id, drop).
func TestLookupsByIDUseAnIndex(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := t.TempDir()
	m, err := StartMongo(dir, "127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	client, err := mongo.Connect(options.Client().ApplyURI(m.URI))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Disconnect(context.Background())
	c := client.Database("idx").Collection("docs")
	for i := range 50 {
		if _, err := c.InsertOne(ctx, bson.D{{Key: "_id", Value: fmt.Sprint("d", i)}, {Key: "n", Value: i}}); err != nil {
			t.Fatal(err)
		}
	}

	plan := func() string {
		db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "idx.sqlite")+"?mode=ro")
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var table string
		if err := db.QueryRowContext(ctx, `SELECT table_name FROM _ferretdb_collections WHERE name = 'docs'`).Scan(&table); err != nil {
			t.Fatal(err)
		}
		// The statement FerretDB v1.24 runs for a find by _id.
		rows, err := db.QueryContext(ctx, fmt.Sprintf(`EXPLAIN QUERY PLAN SELECT _ferretdb_sjson FROM %q WHERE _ferretdb_sjson->'$._id' = ?`, table), `"d7"`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			out = append(out, detail)
		}
		return strings.Join(out, "; ")
	}
	deadline := time.Now().Add(10 * indexCheckEvery)
	for p := plan(); !strings.Contains(p, "__id_expr"); p = plan() {
		if time.Now().After(deadline) {
			t.Fatalf("find by _id still runs as %q", p)
		}
		time.Sleep(indexCheckEvery / 2)
	}

	// Still a working server: find, update, unique _id, drop and re-create.
	var d struct{ N int }
	if err := c.FindOne(ctx, bson.D{{Key: "_id", Value: "d7"}}).Decode(&d); err != nil || d.N != 7 {
		t.Fatalf("find d7 = %+v, %v", d, err)
	}
	if res, err := c.UpdateOne(ctx, bson.D{{Key: "_id", Value: "d7"}}, bson.D{{Key: "$set", Value: bson.D{{Key: "n", Value: 70}}}}); err != nil || res.ModifiedCount != 1 {
		t.Fatalf("update d7 = %+v, %v", res, err)
	}
	if _, err := c.InsertOne(ctx, bson.D{{Key: "_id", Value: "d7"}}); !mongo.IsDuplicateKeyError(err) {
		t.Fatalf("second d7: %v, want duplicate key", err)
	}
	if err := client.Database("idx").Drop(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.InsertOne(ctx, bson.D{{Key: "_id", Value: "d7"}, {Key: "n", Value: 1}}); err != nil {
		t.Fatalf("insert after drop: %v", err)
	}
	if err := c.FindOne(ctx, bson.D{{Key: "_id", Value: "d7"}}).Decode(&d); err != nil || d.N != 1 {
		t.Fatalf("find after drop = %+v, %v", d, err)
	}
}
