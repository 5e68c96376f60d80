package lambda

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/shiftflow/shiftflow/core/event"
)

// echoMux is a small real handler: it reports what it saw, so tests can
// check the conversion from event to request.
func echoMux() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /shifts/{id}/complete", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Add("Set-Cookie", "a=1")
		w.Header().Add("Set-Cookie", "b=2")
		w.WriteHeader(http.StatusAccepted)
		_ = json.NewEncoder(w).Encode(map[string]any{
			"id":         r.PathValue("id"),
			"path":       r.URL.Path,
			"query":      r.URL.Query().Get("q"),
			"body":       string(body),
			"accept":     r.Header.Values("Accept"),
			"ifModified": r.Header.Get("If-Modified-Since"),
			"xDate":      r.Header.Values("X-Date"),
			"cookie":     r.Header.Values("Cookie"),
			"remoteAddr": r.RemoteAddr,
		})
	})
	mux.HandleFunc("DELETE /silent", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("GET /panic", func(w http.ResponseWriter, r *http.Request) { panic("boom") })
	return mux
}

func v2Event(method, rawPath, stage string) events.APIGatewayV2HTTPRequest {
	ev := events.APIGatewayV2HTTPRequest{
		Version:  "2.0",
		RouteKey: method + " " + rawPath,
		RawPath:  rawPath,
		Headers:  map[string]string{},
	}
	ev.RequestContext.Stage = stage
	ev.RequestContext.RequestID = "req-1"
	ev.RequestContext.DomainName = "abc.execute-api.eu-west-1.amazonaws.com"
	ev.RequestContext.HTTP.Method = method
	ev.RequestContext.HTTP.Path = rawPath
	ev.RequestContext.HTTP.SourceIP = "203.0.113.9"
	return ev
}

func invokeV2(t *testing.T, a *HTTP, ev events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, map[string]any) {
	t.Helper()
	payload, _ := json.Marshal(ev)
	out, err := a.Invoke(context.Background(), payload)
	if err != nil {
		t.Fatalf("invoke: %v", err)
	}
	var resp events.APIGatewayV2HTTPResponse
	if err := json.Unmarshal(out, &resp); err != nil {
		t.Fatalf("decode response %s: %v", out, err)
	}
	var body map[string]any
	_ = json.Unmarshal([]byte(resp.Body), &body)
	return resp, body
}

func TestHTTPv2RoutesWithStagePrefixesStripped(t *testing.T) {
	tests := []struct {
		name, rawPath, stage, basePath, wantPath string
		wantStatus                               int
	}{
		{"default stage", "/shifts/s1/complete", "$default", "", "/shifts/s1/complete", 202},
		{"named stage in path", "/prod/shifts/s1/complete", "prod", "", "/shifts/s1/complete", 202},
		{"custom domain base path", "/v1/shifts/s1/complete", "$default", "/v1", "/shifts/s1/complete", 202},
		{"stage and base path", "/prod/v1/shifts/s1/complete", "prod", "v1/", "/shifts/s1/complete", 202},
		{"a stage name that only prefixes a segment is kept", "/production/shifts/s1/complete", "prod", "", "", 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := NewHTTP(echoMux(), HTTPOptions{BasePath: tt.basePath})
			resp, body := invokeV2(t, a, v2Event("POST", tt.rawPath, tt.stage))
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status %d, want %d (body %s)", resp.StatusCode, tt.wantStatus, resp.Body)
			}
			if tt.wantStatus == 202 && (body["path"] != tt.wantPath || body["id"] != "s1") {
				t.Fatalf("handler saw path %v id %v, want %s s1", body["path"], body["id"], tt.wantPath)
			}
		})
	}
}

func TestHTTPv2KeepsHeaderValuesWholeAndJoinsCookies(t *testing.T) {
	ev := v2Event("POST", "/shifts/s9/complete", "$default")
	// HTTP API joins repeated headers with commas; values with commas of
	// their own (dates) must reach the handler intact.
	ev.Headers = map[string]string{
		"accept":            "application/json, text/plain",
		"if-modified-since": "Sat, 28 Nov 2026 10:00:00 GMT",
		"x-date":            "Sat, 28 Nov 2026 10:00:00 GMT",
		"content-type":      "application/json",
	}
	ev.Cookies = []string{"session=abc", "theme=dark"}
	ev.RawQueryString = "q=a%2Cb"
	ev.Body = base64.StdEncoding.EncodeToString([]byte(`{"breakMinutes":30}`))
	ev.IsBase64Encoded = true

	resp, body := invokeV2(t, NewHTTP(echoMux(), HTTPOptions{}), ev)
	if resp.StatusCode != 202 {
		t.Fatalf("status %d: %s", resp.StatusCode, resp.Body)
	}
	checks := map[string]string{
		"accept":     `["application/json, text/plain"]`,
		"ifModified": `"Sat, 28 Nov 2026 10:00:00 GMT"`,
		"xDate":      `["Sat, 28 Nov 2026 10:00:00 GMT"]`,
		"cookie":     `["session=abc; theme=dark"]`,
		"query":      `"a,b"`,
		"body":       `"{\"breakMinutes\":30}"`,
		"remoteAddr": `"203.0.113.9"`,
	}
	for k, want := range checks {
		got, _ := json.Marshal(body[k])
		if string(got) != want {
			t.Errorf("%s: got %s, want %s", k, got, want)
		}
	}
	if resp.Headers["Content-Type"] != "application/json" {
		t.Errorf("content type %q", resp.Headers["Content-Type"])
	}
	if strings.Join(resp.Cookies, ";") != "a=1;b=2" {
		t.Errorf("Set-Cookie values must travel as cookies, got %v", resp.Cookies)
	}
}

func TestHTTPEveryResponseHasAStatus(t *testing.T) {
	a := NewHTTP(echoMux(), HTTPOptions{})
	resp, _ := invokeV2(t, a, v2Event("DELETE", "/silent", "$default"))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("handler writing nothing: status %d, want 200", resp.StatusCode)
	}
	resp, body := invokeV2(t, a, v2Event("GET", "/panic", "$default"))
	if resp.StatusCode != http.StatusInternalServerError {
		t.Fatalf("panicking handler: status %d, want 500", resp.StatusCode)
	}
	if e, _ := body["error"].(map[string]any); e["code"] != "internal" || strings.Contains(resp.Body, "boom") {
		t.Fatalf("panic body must be a generic JSON error, got %s", resp.Body)
	}
	resp, _ = invokeV2(t, a, v2Event("GET", "/nowhere", "$default"))
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown route: status %d, want 404", resp.StatusCode)
	}
}

func TestHTTPv1RESTEvent(t *testing.T) {
	ev := events.APIGatewayProxyRequest{
		HTTPMethod: "POST",
		Path:       "/api/shifts/s2/complete",
		MultiValueHeaders: map[string][]string{
			"Accept": {"application/json", "text/plain"},
			"X-Date": {"Sat, 28 Nov 2026 10:00:00 GMT"},
		},
		MultiValueQueryStringParameters: map[string][]string{"q": {"x"}},
		Body:                            `{}`,
	}
	ev.RequestContext.Stage = "prod"
	ev.RequestContext.Path = "/prod/api/shifts/s2/complete"
	ev.RequestContext.Identity.SourceIP = "198.51.100.7"
	payload, _ := json.Marshal(ev)
	out, err := NewHTTP(echoMux(), HTTPOptions{BasePath: "/api"}).Invoke(context.Background(), payload)
	if err != nil {
		t.Fatal(err)
	}
	var resp events.APIGatewayProxyResponse
	if err := json.Unmarshal(out, &resp); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 202 {
		t.Fatalf("status %d: %s", resp.StatusCode, resp.Body)
	}
	var body map[string]any
	_ = json.Unmarshal([]byte(resp.Body), &body)
	if body["id"] != "s2" || body["query"] != "x" || body["remoteAddr"] != "198.51.100.7" {
		t.Fatalf("handler saw %v", body)
	}
	if got, _ := json.Marshal(body["accept"]); string(got) != `["application/json","text/plain"]` {
		t.Errorf("accept %s", got)
	}
	if got := resp.MultiValueHeaders["Set-Cookie"]; len(got) != 2 {
		t.Errorf("both Set-Cookie values must be returned, got %v", got)
	}
}

func TestHTTPRejectsNonHTTPEvents(t *testing.T) {
	a := NewHTTP(echoMux(), HTTPOptions{})
	for _, payload := range []string{`{"detail-type":"Scheduled Event","source":"aws.events"}`, `{}`, `not json`} {
		if _, err := a.Invoke(context.Background(), []byte(payload)); !errors.Is(err, ErrUnsupportedEvent) {
			t.Errorf("%s: err %v, want ErrUnsupportedEvent", payload, err)
		}
	}
}

func TestDrainReturnsSummaryForScheduledAndDirectInvocations(t *testing.T) {
	calls := 0
	d := NewDrain("invoiceWorker", func(ctx context.Context) (event.DrainSummary, error) {
		calls++
		if _, ok := ctx.Deadline(); !ok {
			t.Error("the invocation deadline must reach the drain")
		}
		return event.DrainSummary{Processed: 3, Succeeded: 3, StoppedBy: "empty", Duration: time.Millisecond}, nil
	}, nil)
	for _, payload := range []string{
		`{"version":"0","id":"e1","detail-type":"Scheduled Event","source":"aws.events","time":"2026-11-28T10:00:00Z","detail":{}}`,
		`{}`,
		``,
	} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		out, err := d.Invoke(ctx, []byte(payload))
		cancel()
		if err != nil {
			t.Fatalf("%q: %v", payload, err)
		}
		var s event.DrainSummary
		if err := json.Unmarshal(out, &s); err != nil || s.Processed != 3 || s.StoppedBy != "empty" {
			t.Fatalf("%q: summary %s (%v)", payload, out, err)
		}
	}
	if calls != 3 {
		t.Fatalf("drain ran %d times, want 3", calls)
	}
}

func TestDrainFailureIsAnInvocationError(t *testing.T) {
	d := NewDrain("onShiftCompleted", func(ctx context.Context) (event.DrainSummary, error) {
		return event.DrainSummary{Processed: 1, Failed: 1}, errors.New("redis unavailable")
	}, nil)
	_, err := d.Invoke(context.Background(), []byte(`{}`))
	if err == nil || !strings.Contains(err.Error(), "onShiftCompleted") || !strings.Contains(err.Error(), "redis unavailable") {
		t.Fatalf("err %v", err)
	}
}
