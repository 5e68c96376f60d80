package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/shiftflow/shiftflow/adapters/lambda"
	"github.com/shiftflow/shiftflow/adapters/testenv"
	"github.com/shiftflow/shiftflow/core/auth"
)

// TestLambdaLoginCountsTheAPIGatewaySourceIP drives POST /login through
// the Lambda HTTP adapter with API Gateway (HTTP API) events: the per-IP
// budget follows requestContext.http.sourceIp, and an X-Forwarded-For a
// client writes itself neither escapes nor frames anyone.
func TestLambdaLoginCountsTheAPIGatewaySourceIP(t *testing.T) {
	rdb, _ := testenv.MiniRedis(t)
	app := newAuthApp(t, rdb, testenv.MongoDB(t), authAppOptions{limits: auth.Limits{
		Account: auth.Rate{Limit: 1000, Window: time.Hour},
		IP:      auth.Rate{Limit: 3, Window: time.Hour},
	}})
	fn := lambda.NewHTTP(app.handler, lambda.HTTPOptions{})
	invoke := func(sourceIP, xff string, n int) events.APIGatewayV2HTTPResponse {
		t.Helper()
		ev := events.APIGatewayV2HTTPRequest{
			Version: "2.0", RouteKey: "POST /login", RawPath: "/login",
			Headers: map[string]string{"content-type": "application/json"},
			Body:    fmt.Sprintf(`{"email":"user%d@example.com","password":"guess"}`, n),
		}
		if xff != "" {
			ev.Headers["x-forwarded-for"] = xff
		}
		ev.RequestContext.Stage = "$default"
		ev.RequestContext.HTTP.Method = "POST"
		ev.RequestContext.HTTP.Path = "/login"
		ev.RequestContext.HTTP.SourceIP = sourceIP
		payload, _ := json.Marshal(ev)
		out, err := fn.Invoke(context.Background(), payload)
		if err != nil {
			t.Fatal(err)
		}
		var resp events.APIGatewayV2HTTPResponse
		if err := json.Unmarshal(out, &resp); err != nil {
			t.Fatal(err)
		}
		return resp
	}
	// One client rotating forged X-Forwarded-For values is still one client.
	for i := 0; i < 3; i++ {
		if r := invoke("203.0.113.50", fmt.Sprintf("10.0.0.%d", i), i); r.StatusCode != http.StatusUnauthorized {
			t.Fatalf("attempt %d: %d %s", i, r.StatusCode, r.Body)
		}
	}
	r := invoke("203.0.113.50", "10.0.0.99", 99)
	h := http.Header{}
	for k, v := range r.Headers {
		h.Set(k, v)
	}
	if r.StatusCode != http.StatusTooManyRequests || h.Get("Retry-After") == "" || h.Get("RateLimit-Remaining") != "0" {
		t.Fatalf("fourth attempt from one source IP: %d %v %s", r.StatusCode, r.Headers, r.Body)
	}
	// Another client naming the blocked address in X-Forwarded-For is not
	// blocked with it.
	if r := invoke("198.51.100.60", "203.0.113.50", 100); r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("other source IP: %d %s", r.StatusCode, r.Body)
	}
}
