package mongodb

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shiftflow/shiftflow/adapters/config"
	"github.com/shiftflow/shiftflow/adapters/logging"
	"github.com/shiftflow/shiftflow/adapters/testenv"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Write(p) }
func (l *logBuf) String() string              { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// The connection works against the MongoDB wire-protocol server: connect,
// ping, and index creation that can run twice.
func TestConnectPingAndIdempotentIndexes(t *testing.T) {
	uri := testenv.MongoURI(t)
	var logs logBuf
	lg := logging.New(&logs, "json", "debug")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dbName := strings.ReplaceAll(testenv.Unique("conn"), "-", "_")
	client, db, err := Connect(ctx, config.Mongo{URI: uri, Database: dbName}, lg)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer func() {
		_ = db.Drop(context.Background())
		_ = Disconnect(context.Background(), client, lg)
		if !strings.Contains(logs.String(), "mongodb: closed") {
			t.Errorf("no closed line:\n%s", logs.String())
		}
	}()
	if err := Ping(ctx, client); err != nil {
		t.Fatalf("ping: %v", err)
	}
	coll := db.Collection("things")
	model := mongo.IndexModel{Keys: bson.D{{Key: "orgId", Value: 1}, {Key: "shiftId", Value: 1}}, Options: options.Index().SetUnique(true).SetName("org_shift")}
	for i := range 2 {
		if _, err := coll.Indexes().CreateOne(ctx, model); err != nil {
			t.Fatalf("create index, run %d: %v", i+1, err)
		}
	}
	if _, err := coll.InsertOne(ctx, bson.M{"orgId": "o", "shiftId": "s"}); err != nil {
		t.Fatal(err)
	}
	_, err = coll.InsertOne(ctx, bson.M{"orgId": "o", "shiftId": "s"})
	if !IsDuplicateKey(err) {
		t.Fatalf("unique index not enforced: %v", err)
	}
	for _, want := range []string{"mongodb: connecting", "mongodb: ready"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
}

func TestUnreachableMongoIsExplained(t *testing.T) {
	addr := testenv.FreeAddr(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var logs logBuf
	_, _, err := Connect(ctx, config.Mongo{URI: "mongodb://app:mongo-s3cret-pw@" + addr + "/?serverSelectionTimeoutMS=500", Database: "x"}, logging.New(&logs, "json", "debug"))
	if err == nil {
		t.Fatal("want an error")
	}
	if !strings.Contains(err.Error(), "unreachable") && !strings.Contains(err.Error(), "no server answered") {
		t.Fatalf("error not understandable: %v", err)
	}
	if strings.Contains(err.Error()+logs.String(), "mongo-s3cret-pw") {
		t.Fatalf("password leaked: %v\n%s", err, logs.String())
	}
}
