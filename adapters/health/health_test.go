package health

import (
	"context"
	"testing"
	"time"

	"github.com/shiftflow/shiftflow/adapters/testenv"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

func TestCheckReportsEachDependency(t *testing.T) {
	r, emb := testenv.MiniRedis(t)
	m, err := mongo.Connect(options.Client().ApplyURI(testenv.MongoURI(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Disconnect(context.Background())

	rep := Check(context.Background(), r, m)
	if !rep.OK || !rep.Redis.OK || !rep.Mongo.OK {
		t.Fatalf("healthy dependencies reported unhealthy: %+v", rep)
	}

	emb.Server.Close() // Redis goes away
	start := time.Now()
	rep = Check(context.Background(), r, m)
	if rep.OK || rep.Redis.OK || rep.Redis.Error == "" || !rep.Mongo.OK {
		t.Fatalf("Redis outage not reported alone: %+v", rep)
	}
	if time.Since(start) > Timeout+time.Second {
		t.Fatalf("check took %s, longer than its timeout", time.Since(start))
	}
}
